"""The web console of ops staff (docs/console.md): Chinese by default, served by the admin API
process at ``/`` beside the JSON API at ``/api/v1``. It reads through the services' own query
functions and writes the same audit log; staff log in as console users (``siyu user create``)."""
