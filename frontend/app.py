"""Interior Studio (Streamlit): sign in, describe a room, pick a style, watch it render, download.

A first, minimal studio page; the full designer UI (sketches, gallery, presets) is tracked in the UI issue.
"""

from __future__ import annotations

import time
import uuid

import streamlit as st

from frontend.api_client import ApiClient, ApiError
from frontend.config import get_frontend_settings

st.set_page_config(page_title="Interior Studio", page_icon="🛋️", layout="wide")
settings = get_frontend_settings()

with st.sidebar:
    st.title("Interior Studio")
    token = st.text_input("Designer token", type="password", key="token")

if not token:
    st.info("Sign in with your designer token to start rendering.")
    st.stop()

client = ApiClient(settings, token)
try:
    me = client.me()
    styles = client.styles()
except ApiError as err:
    st.error(err.message)
    st.stop()
st.sidebar.caption(f"Signed in as {me['name']}")

st.header("Describe a room")
prompt = st.text_area("Prompt", "sunlit living room, rattan chairs, teak floor", key="prompt")
names = {s["name"]: s["id"] for s in styles}
style_name = st.radio("Style", list(names), horizontal=True, key="style")
st.caption(next(s["description"] for s in styles if s["name"] == style_name))

if st.button("Render", type="primary", key="render"):
    try:
        job = client.submit_job({"prompt": prompt, "style": names[style_name]}, str(uuid.uuid4()))
        st.session_state["job_id"] = job["id"]
    except ApiError as err:
        st.error(err.message)

job_id = st.session_state.get("job_id")
if job_id:
    bar = st.progress(0.0, text="Queued")
    while True:
        job = client.job(job_id)
        value, maximum = job["progress"]["value"], job["progress"]["max"] or 1
        queued = job["status"] == "queued"
        label = f"Queue position {job['queue_position']}" if queued else f"Step {value}/{maximum}"
        bar.progress(min(1.0, value / maximum), text=label)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.5)
    if job["status"] == "failed" and job["error"]:
        st.error(job["error"]["message"])
    for image in job["images"]:
        data = client.image(image["url"])
        st.image(data, caption=f"seed {image['seed']} · {image['width']}x{image['height']}")
        st.download_button("Download PNG", data, f"render-{image['id']}.png", "image/png", key=image["id"])
