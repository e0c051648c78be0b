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
-- With `once`, each event is sent exactly once and wrk ends as soon as every one has been
-- answered, whatever its duration: a thread stops when all of its own events are answered, and
-- the last thread to stop wakes wrk's main thread, which otherwise sleeps for the whole
-- duration, with the SIGINT that Ctrl-C would send. Then wrk prints its summary as usual.

local ffi = require("ffi")
ffi.cdef [[
int getpid(void);
int kill(int pid, int sig);
]]
local SIGINT = 2

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
-- load nor answers, until the thread stops.
local idle = "GET /staging/webhooks/test HTTP/1.1\r\nHost: loadtest\r\n"

local function exists(path)
   local f = io.open(path)
   if f then f:close() end
   return f ~= nil
end

-- Marks this thread done; the last one to get here ends the run.
local function finish()
   io.open(marker .. tid, "w"):close()
   for t = 0, nthreads - 1 do
      if not exists(marker .. t) then return end
   end
   ffi.C.kill(ffi.C.getpid(), SIGINT)
end

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
   answered = 0
   if once then
      marker = path .. ".done."
      -- wrk calls thread 0's request() once before the run, only to check that it returns a
      -- request; that call must not use up an event.
      checked = tid ~= 0
      if #reqs == 0 then finish() end
      -- The hook is set in once mode only: with it, wrk hands every response's headers and body
      -- to Lua, which the duration mode's runs need not pay for.
      response = answer
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

function answer(status, headers, body)
   answered = answered + 1
   if answered == #reqs then
      wrk.thread:stop()
      finish()
   end
end

function done(summary, latency, requests)
   local w, a = 0, 0
   for _, t in ipairs(threads) do
      w = w + (t:get("wrapped") or 0)
      a = a + (t:get("answered") or 0)
   end
   local e = summary.errors
   -- Answers are counted by the response hook in once mode only; otherwise wrk's own count of
   -- completed requests is the number answered.
   if a == 0 then a = summary.requests end
   io.write(string.format("LOADTEST non2xx=%d wrapped=%d answered=%d duration_us=%d socket_errors=%d\n",
      e.status, w, a, summary.duration, e.connect + e.read + e.write + e.timeout))
end
