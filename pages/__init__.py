"""Streamlit pages: UI only; every decision is made in `core`."""
