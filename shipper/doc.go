// Package shipper turns events into StatsD/DogStatsD datagrams: it
// sanitises and interns names and tags, aggregates values per flush
// interval, packs lines into datagrams that never exceed the receiver's
// payload limit, and sends them through a bounded queue and a circuit
// breaker, counting everything it could not deliver.
//
// It imports only the standard library and golang.org/x/sys (for sendmmsg
// and cache-line padding), so it builds and tests anywhere, without
// privileges.
//
// # Data flow
//
//	Interner ── Key ──► Aggregator ──Flush──► Packer ──► Queue ──► Batcher ──► socket
//	(sanitise once,     (sums, last          (lines of    (bounded,  (sendmmsg
//	 budget, overflow)   values, buckets)     a Dialect)   policies)  batches)
//	                                                                    │
//	                         Health ◄── signals          Breaker ◄──────┘
//
// The producing goroutine looks up a [Key] with [Metric.Key] (no
// allocation for values seen before) and updates the [Aggregator]. Each
// interval the flush loop calls [Shipper.Flush], which packs every touched
// series into datagrams, critical priority first, and queues them; the
// sending goroutine ([Shipper.Run]) sends them in batches.
//
// # Wire rules
//
// Lines are "name:value|type" with optional "|@rate" and "|#tag,tag"
// fields, each ended by "\n". A datagram holds whole lines only and never
// more than its payload limit ([UDPPayload], [UDPPayloadIPv6],
// [UnixgramPayload], or any limit from [MinPayload] up). A line never ends
// in "|" and never carries an empty "|#".
//
// Names keep ASCII letters, digits, '_' and '.'; tag keys and values keep
// letters, digits, '_', '-', '.' and '/'. Every other byte becomes '_', a
// name or key that does not start with a letter gets one in front, and the
// result is cut to the DogStatsD limits. This happens once, when a value is
// first seen, so text chosen by an attacker (a process name) can never add
// a line, a field or a tag.
//
// # Dialects
//
// Receivers parse StatsD differently; each [Dialect] writes only what its
// receiver reads as meant:
//
//	dialect          tags            h / d      several values    negative gauge
//	dogstatsd        |#k:v           h / d      v1:v2|d           as is
//	statsd           none            ms / ms    v1|ms:v2|ms       0|g first
//	statsd_exporter  |#k:v           h / d      v1:v2|d           0|g first
//	telegraf         name,k=v        h / h      v1|h:v2|h         0|g first
//	gostatsd         |#k:v           h / h      one per line      0|g first
//
// No dialect sends sets, events, service checks, container or cardinality
// fields, or bare tags; statsd_exporter gets no negative counter sums,
// which a Prometheus counter cannot take (they are counted as rejected). A sample rate r is written so that 1/r parses back
// to the intended count, since statsd_exporter and Telegraf truncate it to
// an integer number of observations.
//
// # Histograms
//
// Observed values ship as they are, up to [AggregatorOptions.MaxSamples]
// per series and interval; past that they fall into log2 buckets that keep
// exact counts and sums, shipped at each bucket's mean with sample rate
// 1/count. Kernel log2 histograms ([Aggregator.AddBuckets]) ship at each
// bucket's [BucketMidpoint] with sample rate 1/count.
//
// # Cardinality
//
// Each metric has a budget of series, and the [Interner] one overall.
// Values past it go to one overflow series per metric, whose variable tags
// read [OverflowTagValue], so totals stay exact and memory bounded however
// many names arrive. With [AggregatorOptions.IdleIntervals], series that
// go unused for that many flushes are evicted and their budget reused, so
// names that come and go do not fill it for good.
//
// # Accounting
//
// Every datagram and line handed to the queue ends up sent, failed (a send
// error), dropped for a reason (see [Stat]), or still queued; the
// [SelfCounters] hold each count, and lines too long for any datagram are
// counted too. Under pressure, low-priority series can be shed
// deterministically ([Aggregator.SetShed]): they ship every n-th interval
// and keep aggregating in between, so nothing is lost.
//
// # Failure
//
// The [Breaker] opens after consecutive failed send rounds (ECONNREFUSED,
// EHOSTUNREACH, ENETUNREACH, ENOENT, a socket that stays full). While it is
// open nothing is sent, flushes are deferred and the aggregator keeps
// summing in place; after a jittered backoff a probe (an empty UDP
// datagram followed by a check of the socket's error, or a new unixgram
// connection) closes it again. The [Health] monitor turns ring fill, drops,
// send errors, queue depth and heap into a throttle [Level] with
// hysteresis, which the daemon maps to the kernel sampling knob, shedding
// and the flush interval.
package shipper
