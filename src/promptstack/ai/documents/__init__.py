"""Documents: uploaded, chunked, embedded and searched, to answer from with citations."""
