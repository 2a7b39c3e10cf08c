//! Root-cause analysis (planned): ranks candidate causes of an incident. Nothing here yet; see issue 6.
