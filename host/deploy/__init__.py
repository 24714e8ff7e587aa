"""Getting the edge onto a board: board files, board access, offline bundles, deploys."""

from host.deploy.access import (
    ACCESS,
    BoardAccess,
    BoardAccessError,
    CommandRunner,
    FileTransfer,
    open_access,
    open_shell,
)
from host.deploy.board import Board, load_board
from host.deploy.errors import BoardError, DeployError
from host.deploy.offline import DeployBundle, load_deploy_bundle, make_deploy_bundle
from host.deploy.release import DeployResult, deploy

__all__ = [
    "ACCESS",
    "Board",
    "BoardAccess",
    "BoardAccessError",
    "BoardError",
    "CommandRunner",
    "DeployBundle",
    "DeployError",
    "DeployResult",
    "FileTransfer",
    "deploy",
    "load_board",
    "load_deploy_bundle",
    "make_deploy_bundle",
    "open_access",
    "open_shell",
]
