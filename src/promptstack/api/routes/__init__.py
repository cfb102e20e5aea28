"""One module per resource."""

API_V1 = "/api/v1"
