// Package auth identifies the callers of the hub's HTTP API and decides what
// they may do.
//
// Authentication (Authenticator): the security gateway's forwarded officer
// certificate, trusted only on a connection that presents a configured
// gateway client certificate (Gateway); a bearer token of the unified
// portal (Bearer, OpenID Connect); the development identity headers
// (DevHeaders), which the configuration refuses in production. Chain asks
// them in that order; Middleware puts the identity in the request context,
// adds the locally granted roles (AccessSource) and answers 401 E401 to a
// refused request, auditing the refusal.
//
// Error messages for callers are Chinese (zh-CN); logs and errors English.
package auth
