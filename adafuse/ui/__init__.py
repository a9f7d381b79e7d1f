"""The Gradio app's helpers: rendering (render, charts), task presets, metrics, model store,
comparison runs and the callbacks that app.py wires to the layout."""
