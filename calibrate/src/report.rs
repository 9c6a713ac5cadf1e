//! The campaign report (report.html and report.md) rendered from a campaign's summary.json.
