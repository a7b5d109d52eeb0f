"""The web app for people: server-rendered pages, a little JavaScript, served by the API process."""
