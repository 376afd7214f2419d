"""``sap-viz serve``: an OpenAI-compatible chat server around the model, with the polytope monitoring and steering.

``schemas.py`` checks a request and turns it into the core's settings; ``conversation.py`` feeds the
earlier turns through the chat template; ``engine.py`` generates and writes the ``sap`` report;
``moderation.py`` turns the prompt verdict into OpenAI's moderation answer;
``queue.py`` admits requests to the one model; ``app.py`` is the FastAPI app; the command is ``sap_viz/cli/serve_command.py``.
No module here imports Gradio.
"""

API_KEY_ENV = "SAP_VIZ_API_KEY"  # with it set, every /v1 request needs "Authorization: Bearer <key>"
LOOPBACK = "127.0.0.1"  # where a server without an API key may listen
