"""The shared HTTP kit: problem documents, middleware, the server protocol, and the
dependencies and schemas every domain's routes use. It knows no domain."""

API_V1 = "/api/v1"
