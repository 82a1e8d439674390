"""emgdx clinic service: API, web page and longitudinal patient records."""
