-- wrk script for the "post" scenario: every request is a 64 KiB POST.
-- wrk adds the Content-Length header itself when wrk.body is set.
wrk.method = "POST"
wrk.body = string.rep("p", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
