"""The responder: Alertmanager's webhook, its journal and worker, the healing and audit APIs.

A Flask app (:mod:`monitoriza.responder.app`) served by :mod:`monitoriza.responder.server`; the
correlation and healing it drives live in :mod:`monitoriza.healing`, which never imports back.
"""
