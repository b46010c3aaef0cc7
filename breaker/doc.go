// Package breaker is the decision logic of Colony's shared circuit breakers:
// one breaker per caller-service -> callee-service pair, decided once for
// the whole fleet of caller instances. It is pure: no I/O, no goroutines, no
// clock (every method takes the leader's time as now), jitter from a source
// the caller injects. The coordinator leader's engine holds one Breaker per
// pair in memory, feeds it the per-instance bucket counts that sidecars
// report, calls Evaluate on a timer, and writes only transitions (the
// Breaker's Snapshot, a Record) through the raft log; a new leader rebuilds
// each Breaker with Restore, with fresh windows.
//
// # States and transitions
//
//	CLOSED --(failure rate | consecutive failures | slow-call rate, AND quorum)--> OPEN
//	OPEN --(open duration elapsed)--> HALF_OPEN
//	HALF_OPEN --(SuccessesToClose probe successes)--> CLOSED
//	HALF_OPEN --(any probe failure; OpenCount+1, longer open duration)--> OPEN
//	HALF_OPEN --(no decision within HalfOpenMaxWait; OpenCount+1)--> OPEN
//
// The quorum (MinFailingInstances, MinFailingShare) counts distinct caller
// instances that saw failures in the window, so one sick caller cannot open
// the breaker for the fleet. The open duration is OpenDuration *
// BackoffMultiplier^(OpenCount-1), capped at MaxOpenDuration, with ±Jitter.
// HALF_OPEN admits ProbeBudget probe calls for the whole fleet: AssignProbes
// shares them out as permits to specific caller instances and
// ReassignProbes moves permits away from holders that vanish or stay silent
// past ProbeTimeout. Every transition increments the generation and starts
// a fresh window.
//
// # The engine's loop
//
//	b, _ := breaker.New(policy, now, breaker.WithRand(rng.Float64))
//	// for each outcome report:
//	err := b.Report(now, instanceID, counts) // bad counts: an error, nothing changes
//	// on a timer, or after a batch of reports:
//	if t, ok := b.Evaluate(now); ok {
//		if t.To == breaker.HalfOpen {
//			b.AssignProbes(now, liveInstances)
//		}
//		persist(b.Snapshot()) // through the raft log
//	} else if _, changed := b.ReassignProbes(now, liveInstances); changed {
//		persist(b.Snapshot())
//	}
//	// when the leader changes:
//	b, _ = breaker.Restore(policy, record, now, breaker.WithRand(rng.Float64))
//
// Sidecars classify each call with a Classifier (NewClassifier) and add the
// Verdict to the Counts of the current report period (Counts.Add).
//
// # Mapping from sony/gobreaker v2 and resilience4j
//
// FromGobreaker and FromResilience4j do these conversions onto a base
// policy; DESIGN.md beside this file has the same tables.
//
//	sony/gobreaker v2 Settings / Counts     Policy
//	--------------------------------------  -----------------------------------------------
//	MaxRequests (0 means 1)                 ProbeBudget and SuccessesToClose (fleet-wide here,
//	                                        per process there)
//	Interval (fixed window, cleared)        Window, Buckets = 1 (tumbling)
//	Interval <= 0 (never cleared)           no equivalent: a window is required
//	BucketPeriod (rolling)                  Window/Buckets = BucketPeriod
//	Timeout (<= 0 means 60s)                OpenDuration (BackoffMultiplier 1, Jitter 0: no backoff there)
//	ReadyToTrip(Counts) bool                the trip conditions; only these shapes map:
//	  ConsecutiveFailures > N                 ConsecutiveFailures = N+1 (default N=5)
//	  Requests >= M && failures/Requests >= r MinimumCalls = M, FailureRateThreshold = r
//	  any other function                      no equivalent
//	Counts.Requests                         Evidence.Calls (+ Excluded; there Requests includes them)
//	Counts.TotalSuccesses / TotalFailures   Evidence.Successes / Failures (window sums)
//	Counts.TotalExclusions                  Evidence.Excluded
//	Counts.ConsecutiveFailures              Evidence.ConsecutiveFailures (fleet-wide run, report order);
//	                                        per report: Counts.TrailingFailures
//	Counts.ConsecutiveSuccesses             probe successes in HALF_OPEN (Evidence.ProbeSuccesses)
//	IsSuccessful(err) / IsExcluded(err)     Classification (statuses, not errors): failures / excluded
//	OnStateChange                           the Transition Evaluate returns
//	(no equivalent)                         quorum, slow calls, backoff, jitter, ProbeTimeout
//
//	resilience4j CircuitBreakerConfig       Policy
//	--------------------------------------  -----------------------------------------------
//	failureRateThreshold (percent, >=)      FailureRateThreshold (0..1, >=)
//	slidingWindowType TIME_BASED            sliding time Window (COUNT_BASED has no equivalent)
//	slidingWindowSize (seconds)             Window = size s, Buckets = size (one per second)
//	minimumNumberOfCalls                    MinimumCalls
//	waitDurationInOpenState                 OpenDuration
//	enableExponentialBackoff,               BackoffMultiplier (off: 1),
//	  exponentialBackoffMultiplier,           default 1.5 there
//	  exponentialMaxWaitDurationInOpenState MaxOpenDuration
//	enableRandomizedWait,                   Jitter (off: 0; default factor 0.5 there)
//	  randomizedWaitFactor
//	permittedNumberOfCallsInHalfOpenState   ProbeBudget (fleet-wide here, per instance there),
//	                                        SuccessesToClose = the same number
//	slowCallRateThreshold (percent)         SlowCallRateThreshold (0..1)
//	slowCallDurationThreshold               SlowCallDuration (a call longer than it is slow)
//	automaticTransitionFromOpenToHalfOpen-  always on: the leader's timer moves OPEN -> HALF_OPEN
//	  Enabled
//	recordExceptions / ignoreExceptions     Classification failures / excluded (statuses, not exceptions)
//	maxWaitDurationInHalfOpenState          HalfOpenMaxWait (0 there means forever; here it is
//	                                        always bounded, default 1m); silent probe holders
//	                                        also lose their permits after ProbeTimeout
//	(no equivalent)                         quorum
//
// Two semantic differences matter. In HALF_OPEN resilience4j waits for all
// permitted calls and compares their failure rate with the threshold;
// Colony, like gobreaker, re-opens on the first probe failure and closes
// after SuccessesToClose successes. And both libraries count per process;
// Colony counts the fleet, so a probe budget of 3 is 3 probe calls in all.
package breaker
