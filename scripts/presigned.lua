-- wrk script for scripts/loadtest.sh: replays pre-signed Stripe events, each once.
-- Arguments: the file written by `presign` (`<Stripe-Signature>\t<body>` per line) and the
-- number of wrk threads. Each thread takes every n-th line, so no two threads send one event.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local path, nthreads = args[1], tonumber(args[2])
   reqs = {}
   local n = 0
   for line in io.lines(path) do
      if n % nthreads == tid then
         local sig, body = line:match("^([^\t]*)\t(.*)$")
         reqs[#reqs + 1] = wrk.format("POST", "/staging/webhooks/stripe",
            { ["Content-Type"] = "application/json", ["Stripe-Signature"] = sig }, body)
      end
      n = n + 1
   end
   i = 0
   wrapped = 0
end

function request()
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
   io.write(string.format("LOADTEST non2xx=%d wrapped=%d\n", summary.errors.status, w))
end
