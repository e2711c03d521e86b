from .main import app
