"""The console's pages, a module each: ``mount(app, console)`` adds its routes."""
