// Package shipper turns aggregation keys and values into StatsD/DogStatsD
// datagrams: it sanitises and interns names and tags, aggregates values per
// flush interval, and packs lines into datagrams that never exceed the
// receiver's payload limit.
//
// It imports only the standard library, so it builds and tests anywhere,
// without privileges.
//
// # Wire rules
//
// Lines are "name:value|type" with an optional "|#tag,tag" suffix, each
// ended by "\n". A datagram holds whole lines only. Names and tags are
// sanitised once, when they are interned, so text chosen by an attacker (a
// process name) can never add a line, a field or a tag.
package shipper
