"""Router and frame: page config, login, role-based navigation, shared sidebar."""

from __future__ import annotations

import os

# Before torch or llama.cpp are imported (see STACK.md): otherwise their OpenMP pools spin.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import streamlit as st  # noqa: E402

from pages.common import current_user, services, user_store  # noqa: E402

st.set_page_config(page_title="Guideline QA", page_icon=":material/medical_services:", layout="wide")


def login_page() -> None:
    st.title("Clinical guideline assistant")
    st.caption("Decision support grounded in your organisation's guidelines. Not a medical device.")
    with st.form("login"):
        username = st.text_input("User name", key="login_user")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        users = user_store()
        if users.verify(username.strip(), password):
            st.session_state["auth_user"] = username.strip()
            st.session_state["auth_role"] = users.role_of(username.strip())
            st.rerun()
        else:
            st.error("Unknown user name or wrong password.")


def logout() -> None:
    for key in ("auth_user", "auth_role"):
        st.session_state.pop(key, None)


user, role = current_user()
if role is None:
    page = st.navigation([st.Page(login_page, title="Log in", icon=":material/login:")])
else:
    services()  # opens the library (and indexes the demo corpus on first start) once per process
    pages = [
        st.Page("pages/chat.py", title="Ask", icon=":material/chat:", default=True),
        st.Page("pages/search.py", title="Search guidelines", icon=":material/search:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    ]
    if role == "admin":
        pages.append(st.Page("pages/library.py", title="Guideline library", icon=":material/library_books:"))
        pages.append(st.Page("pages/rules.py", title="Safety rules", icon=":material/rule:"))
        pages.append(st.Page("pages/prompts.py", title="System prompts", icon=":material/edit_note:"))
        pages.append(st.Page("pages/models.py", title="Models and adapters", icon=":material/model_training:"))
        pages.append(st.Page("pages/analytics.py", title="Analytics", icon=":material/monitoring:"))
    page = st.navigation(pages)
    with st.sidebar:
        st.caption(f"Signed in as **{user}** ({role})")
        st.button("Log out", on_click=logout, key="logout")
        st.caption("Decision support only. Check the cited guideline before acting.")
page.run()
