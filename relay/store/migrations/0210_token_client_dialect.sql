-- The event dialect a token's WebSocket clients speak (beta or ga), used when their handshake
-- says nothing about it (no OpenAI-Beta header, no ?dialect=). NULL: decided by the handshake.

ALTER TABLE api_tokens ADD COLUMN client_dialect TEXT;
