"""The API's routers: thin translations between HTTP and :mod:`optim`."""
