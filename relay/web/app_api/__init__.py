"""The app REST API's HTTP side (seed 002): handlers under ``/v1/app`` and the admin routes of stories and
workspace voices. The area module is ``routes``; the operations they call are ``relay.app_api``."""
