-- wrk script for scripts/loadtest.sh: replays pre-signed Stripe events.
-- Arguments: the file written by `presign` (`<Stripe-Signature>\t<X-Hub-Signature-256>\t<body>`
-- per line), the number of wrk threads, and optionally `once` and `hub`. Each thread takes every
-- n-th line, so no two threads send one event. Each event carries Stripe's signature of its body,
-- which stagehook and the durable floor check; with `hub`, GitHub's too, for the webhook peer,
-- which checks only that one (sent only to it, so the others do not store its bytes).
--
-- Each thread formats all its events up front: a million of them take about 1.5 GB, which
-- LuaJIT holds when it is built with GC64 (Debian's is), and formatting each one as it is sent
-- instead cuts wrk's own rate against the floor to well under half. By default a thread that
-- has sent all its events starts over (the repeats are answered as duplicates) until wrk's
-- duration ends.
--
-- With `once`, each event is sent exactly once; once a thread has sent all of its own, its
-- connections go quiet (see `idle`). wrk does not know when the last answer came, so
-- scripts/loadtest.sh watches stagehook's count of stored events and ends wrk with the SIGINT that
-- Ctrl-C would send; wrk then prints its summary as usual, with every answered request counted.
-- No `response` hook counts the answers here: with one, wrk hands every response's headers and
-- body to Lua, whose heap holds the formatted events, and over a million events that alone
-- stalled wrk for half a second (max 507 to 536 ms in three runs, against 54 to 82 ms in two
-- without it) and made its p99 swing from 11 to 145 ms on the same build.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local function format(line)
   local sig, hub, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
   local headers = { ["Content-Type"] = "application/json", ["Stripe-Signature"] = sig }
   if with_hub then headers["X-Hub-Signature-256"] = hub end
   return wrk.format("POST", "/staging/webhooks/stripe", headers, body)
end

-- A request line and one header without the blank line that ends them: the server waits for the
-- rest, so a connection given this once its thread has no events left stays quiet, adding neither
-- load nor answers, until wrk ends.
local idle = "GET /staging/webhooks/test HTTP/1.1\r\nHost: loadtest\r\n"

function init(args)
   local path = args[1]
   nthreads = tonumber(args[2])
   once = args[3] == "once"
   with_hub = args[3] == "hub" or args[4] == "hub"
   reqs = {}
   local n = 0
   for line in io.lines(path) do
      if n % nthreads == tid then reqs[#reqs + 1] = format(line) end
      n = n + 1
   end
   i = 0
   wrapped = 0
   if once then
      -- wrk calls thread 0's request() once before the run, only to check that it returns a
      -- request; that call must not use up an event.
      checked = tid ~= 0
   end
end

function request()
   if once then
      if not checked then
         checked = true
         return reqs[1] or idle
      end
      if i == #reqs then return idle end
      i = i + 1
      return reqs[i]
   end
   i = i + 1
   if i > #reqs then
      -- Out of unique events: start over (the repeats are answered as duplicates).
      i = 1
      wrapped = wrapped + 1
   end
   return reqs[i]
end

function done(summary, latency, requests)
   local w = 0
   for _, t in ipairs(threads) do
      w = w + (t:get("wrapped") or 0)
   end
   local e = summary.errors
   -- wrk's own count of completed requests is the number answered.
   local a = summary.requests
   io.write(string.format("LOADTEST non2xx=%d wrapped=%d answered=%d duration_us=%d socket_errors=%d\n",
      e.status, w, a, summary.duration, e.connect + e.read + e.write + e.timeout))
end
