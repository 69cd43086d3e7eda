"""Silo from Python: federated learning in a notebook.

Silo is a federated learning workspace: organisations that cannot pool
their data train and analyse models together, each keeping its data next
to a task runner it controls. This package is its client for model
builders, with the standard library only; with pandas and matplotlib
installed, tables come back as DataFrames and ``.plot()`` draws charts.

>>> import silo
>>> client = silo.connect()                  # $SILO_SERVER/$SILO_TOKEN or the saved 'silo login'
>>> client.datasets()                        # metadata of the datasets, never rows
>>> s = client.create_session(config)        # a dict or the path of a JSON file
>>> s.wait()                                 # progress bar until it ends
>>> s.metrics().plot()                       # loss and metrics per round
>>> m = s.model(best=True)                   # the model document
>>> m.predict(df)                            # locally, as the runners would
>>> client.predict(s, dataset="hospital_a")  # on the dataset's runner: rows and path

Errors are :class:`silo.Error` subclasses carrying the API's ``code`` and
``message``: :class:`NotFound`, :class:`Forbidden`, :class:`Unauthorized`,
:class:`Conflict`, :class:`Invalid` (with ``field``), :class:`Unreachable`,
:class:`NotAvailable`, :class:`SessionFailed`, :class:`WaitTimeout`.
"""

from ._version import __version__
from .client import Client, Dataset, Prediction, Record, Runner, Session, connect
from .config import config_path
from .errors import (
    Conflict,
    Error,
    Forbidden,
    Invalid,
    NotAvailable,
    NotFound,
    ServerError,
    SessionFailed,
    TooManyRequests,
    Unauthorized,
    Unreachable,
    WaitTimeout,
)
from .metrics import Metrics
from .model import Model, load_model
from .results import DatasetResults, Results

__all__ = [
    "__version__",
    "Client",
    "Conflict",
    "Dataset",
    "DatasetResults",
    "Error",
    "Forbidden",
    "Invalid",
    "Metrics",
    "Model",
    "NotAvailable",
    "NotFound",
    "Prediction",
    "Record",
    "Results",
    "Runner",
    "ServerError",
    "Session",
    "SessionFailed",
    "TooManyRequests",
    "Unauthorized",
    "Unreachable",
    "WaitTimeout",
    "config_path",
    "connect",
    "load_model",
]
