"""Sending one webhook request: the edge of service/domain/webhooks.py that speaks HTTP.

urllib3 (the client under requests) is used because it can connect to an address that
was checked while making the request for the host name: the pool is opened on the IP
address `webhooks.target` vetted (DNS is asked once per attempt, and a second answer
cannot send the request elsewhere), with the Host header, TLS SNI and the certificate
check all for the URL's host. Redirects are never followed (a 3xx is recorded as the
answer), at most MAX_RESPONSE_BYTES of the answer is read, and urllib3's own retries
are off: the delivery keeps its own schedule.
"""

from __future__ import annotations

import time

import urllib3
from flask import current_app

from service.domain import webhooks
from service.domain.webhooks import Answer, Message


def send(message: Message) -> Answer:
    started = time.monotonic()

    def answer(**kwargs: object) -> Answer:
        return Answer(duration_ms=int((time.monotonic() - started) * 1000), **kwargs)  # type: ignore[arg-type]

    try:
        target = webhooks.target(message.url)
    except webhooks.Refused as exc:
        return answer(error=f"Not sent: {exc}")
    timeout = urllib3.Timeout(
        connect=webhooks.CONNECT_TIMEOUT_SECONDS,
        read=float(current_app.config["WEBHOOK_TIMEOUT_SECONDS"]),
    )
    default_port = 443 if target.scheme == "https" else 80
    name = f"[{target.host}]" if ":" in target.host else target.host  # an IPv6 literal
    host_header = name if target.port == default_port else f"{name}:{target.port}"
    options: dict[str, object] = {"timeout": timeout, "retries": False, "maxsize": 1}
    if target.scheme == "https":
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            **options,  # type: ignore[arg-type]
        )
    else:
        pool = urllib3.HTTPConnectionPool(target.address, target.port, **options)  # type: ignore[arg-type]
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=message.body,
            headers={**message.headers, "Host": host_header},
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            response.read(webhooks.MAX_RESPONSE_BYTES)
        except urllib3.exceptions.HTTPError:
            pass  # the status is what counts; a body cut short changes nothing
        finally:
            response.release_conn()
        return answer(status=response.status)
    except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError) as exc:
        return answer(error=f"Timed out or cut off: {type(exc).__name__}.", temporary=True)
    except urllib3.exceptions.SSLError as exc:
        return answer(error=f"TLS failed: {_short(exc)}", temporary=True)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return answer(error=f"Could not connect: {_short(exc)}", temporary=True)
    except Exception as exc:  # noqa: BLE001 - recorded on the delivery, tried again
        return answer(error=f"Could not send: {type(exc).__name__}.", temporary=True)
    finally:
        pool.close()


def _short(exc: BaseException) -> str:
    return str(exc)[:300] or type(exc).__name__
