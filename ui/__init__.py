"""UI: a Gradio app mounted on the gateway that talks to it through the openai client."""
