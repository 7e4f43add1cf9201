"""meshid: automate Kong Mesh's "Issue identity with MeshIdentity Spire provider" guide across clusters."""

__version__ = "0.1.0"
LIBRARY_LOGGER = __name__  # every module's logging.getLogger(__name__) is below it
HOME_ENV = "MESHID_HOME"  # meshid.settings' `home`, read without the settings where their import costs too much
DEFAULT_HOME = "~/.cache/meshid"
