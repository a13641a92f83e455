package auth

// Roles of the separated administrators (三员): none may do another's work,
// a user holds at most one of them, and they are granted locally only
// (never taken from a token).
const (
	RoleSysAdmin = "sysadmin" // system administrator: accounts (lock, unlock)
	RoleSecAdmin = "secadmin" // security administrator: certificate bindings, role grants
	RoleAuditor  = "auditor"  // security auditor: reads the audit log
)

// AdminRoles are the separated administrators' roles.
var AdminRoles = []string{RoleSysAdmin, RoleSecAdmin, RoleAuditor}
