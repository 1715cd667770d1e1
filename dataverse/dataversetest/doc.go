// Package dataversetest is an in-process Dataverse emulator for tests, the
// demo and benchmarks. Like net/http/httptest it does not import testing.
//
// It speaks the real wire protocol of the parts screenpop uses, strictly:
//   - the Entra ID v2 token endpoint (POST /{tenant}/oauth2/v2.0/token,
//     client credentials), with Entra-shaped errors (AADSTS codes) for a
//     wrong tenant, client, secret or scope; instead of the secret, a client
//     assertion (certificate credentials) signed by a certificate of
//     Config.ClientCertificates, checked as Entra ID does: PS256 (or RS256
//     with x5t), a thumbprint header naming a registered certificate that
//     has not expired, the signature, iss and sub the client id, aud the
//     token URL, nbf and exp with 5 minutes' skew, a jti (refused with
//     AADSTS700027, 700021, 700023, 700024 or 50027). NewCertificate makes a
//     self-signed certificate and key for it, WriteFile the client's PEM
//     file;
//   - GET /api/data/v9.2/<entityset> with $select, $filter, $top, $orderby,
//     $count and paging (Prefer: odata.maxpagesize, @odata.nextLink with an
//     opaque $skiptoken);
//   - POST /api/data/v9.2/$batch (multipart/mixed, application/http parts,
//     GET requests only), which stops at the first failed request and
//     answers with its status, unless the batch sends
//     Prefer: odata.continue-on-error (then every request is answered);
//   - GET /api/data/v9.2/WhoAmI.
//
// Requests need a bearer token it issued. $filter is parsed for real (eq ne
// gt ge lt le, and or not, parentheses, contains/startswith/endswith,
// escaped literals, numbers, GUIDs, null; text compares case- and
// accent-insensitively, as in an English (US) environment's _CI_AI
// collation, ignoring trailing spaces, and the string functions take
// % _ [] [^] as SQL LIKE wildcards) and anything it cannot parse or
// does not know (a column, a function, $skip, $expand) is answered with a
// 400 and an OData error body, as Dataverse does.
//
// Faults are scripted through methods: ThrottleNext / ThrottleEvery (429
// with Retry-After and the service-protection error body of the limit
// ThrottleLimit names; requests that arrive inside a Retry-After window are
// answered 429 again and recorded as violations), FailNext (5xx),
// FailNextHTML (a gateway's HTML page), FailNextIn (a status for the
// queries of one entity set, also inside a $batch), SetLatency, DenyRead
// (403 missing privilege), DisableAppUser (403 not a member of the
// organization), ExpireTokens (401), ExpireSecret (AADSTS7000222) and
// IgnoreContinueOnError. API answers carry the x-ms-ratelimit-*-remaining
// headers.
//
// Start serves plain HTTP/1.1. StartTLS serves HTTPS, as Dataverse does:
// HTTP/2 for a client that offers it (ALPN h2), with
// Config.MaxConcurrentStreams, under a self-signed loopback certificate
// that RootCAs trusts; RequestsByProto shows which protocol was spoken.
//
// Records change between lookups as Dynamics users change them through
// methods: AddRecord (and AddContact, AddAccount, AddLead), UpdateRecord
// (a column changed or emptied, a record deactivated or merged away) and
// DeleteRecord.
//
// Deliberate gaps: no writes over HTTP (POST/PATCH/DELETE of records), no changesets,
// no replay check of an assertion's jti, no x5c (subject name and issuer)
// certificates (a request with both a secret and an assertion is judged by
// the assertion), no $expand/$apply/FetchXML, no Dataverse functions such as
// Microsoft.Dynamics.CRM.In, and no collation but English (US): no
// accent-sensitive (_CI_AS) languages, and no other folding the SQL
// collation may do (ß and ss, ligatures, ignorable characters).
//
// Every API request is kept in a log (Requests), with the parsed filter in
// canonical form and its string literals, so tests can show that a value
// stayed one literal.
package dataversetest
