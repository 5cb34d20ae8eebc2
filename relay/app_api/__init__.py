"""The app REST API's operations (seed 002): voices, text-to-speech with word timestamps, stories, and their
services. No HTTP here: operations raise ``relay.app_api.errors.AppError``; the handlers are ``relay.web.app_api``."""
