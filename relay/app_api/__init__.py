"""The app REST API under ``/v1/app`` (seed 002): voices, text-to-speech with word timestamps, stories."""
