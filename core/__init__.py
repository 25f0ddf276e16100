"""Clinical guideline QA: all logic lives here; nothing in this package imports streamlit."""
