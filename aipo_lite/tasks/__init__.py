"""Tasks and what reads the model's text: task sources and loaders (loading), verifiable rewards (rewards), prompts (prompts). Imports config only."""
