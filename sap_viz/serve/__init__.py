"""``sap-viz serve``: an OpenAI-compatible chat server around the model, with the polytope monitoring and steering.

``schemas.py`` checks a request and turns it into the core's settings; ``conversation.py`` feeds the
earlier turns through the chat template; ``engine.py`` generates and writes the ``sap`` report;
``queue.py`` admits requests to the one model; ``app.py`` is the FastAPI app; ``cli.py`` the command.
No module here imports Gradio.
"""

API_KEY_ENV = "SAP_VIZ_API_KEY"  # with it set, every /v1 request needs "Authorization: Bearer <key>"
