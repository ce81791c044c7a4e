// Package security holds the hostile-input tests of ledgerq: they build the
// real binary, start it on a free port and attack it from outside, the way
// a client on the network would. They prove, route by route and scope by
// scope, that tokens open only what API.md says; that queue patterns cannot
// be escaped by look-alike names, dot segments or percent-encoding; that
// forged, expired and malformed tokens are refused and never logged; that
// SQL metacharacters and long strings are stored verbatim or refused; that
// oversized, deeply nested, slow and idle clients are bounded while the
// server keeps answering others; and that --tls-cert/--tls-key serve HTTPS.
//
// The fuzz targets that complement these tests live beside the code they
// exercise (domain, transport, queries, eventstore and eventstore/relay).
package security
