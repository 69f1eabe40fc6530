"""The README's main job: a synthetic OCT volume through the SDK end to end."""
