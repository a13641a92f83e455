package auth

import (
	"slices"
	"sort"
)

// Roles. The business roles are held by officers; the roles of the
// separated administrators (三员) by separate accounts.
const (
	// RoleOfficer reads records (masked), files them up and signs tasks.
	RoleOfficer = "officer"
	// RoleUnmask sees personal data in clear, with a stated reason
	// (granted by the security administrator).
	RoleUnmask = "unmask"
	// RoleSysAdmin is the system administrator: accounts (lock, unlock).
	RoleSysAdmin = "sysadmin"
	// RoleSecAdmin is the security administrator: certificate bindings and
	// role grants.
	RoleSecAdmin = "secadmin"
	// RoleAuditor is the security auditor: reads the audit log.
	RoleAuditor = "auditor"
	// RolePortalAdmin is the portal administrator (门户管理员), a business
	// role granted by the security administrator like officer: authors
	// system notices for the units in their scope and manages the units'
	// smart-push rules.
	RolePortalAdmin = "portaladmin"
)

// AdminRoles are the separated administrators' roles. None can do
// another's work: each has only its own permissions; an identity holding
// an administrator's role gets that role's permissions and nothing else
// (neither business permissions nor, with two of them, either); grants
// refuse to combine an administrator's role with any other role; and the
// administrators' roles are granted by the command line at deployment only
// (never through the API, never from a token).
var AdminRoles = []string{RoleSysAdmin, RoleSecAdmin, RoleAuditor}

// IsAdminRole reports whether role is one of AdminRoles.
func IsAdminRole(role string) bool { return slices.Contains(AdminRoles, role) }

// Permission names an action of the API.
type Permission string

// Permissions.
const (
	PermPersonRead    Permission = "person.read"        // masked records, history, controls; search by ID number
	PermPersonUnmask  Permission = "person.unmask"      // records in clear (with a reason)
	PermFilingSubmit  Permission = "filing.submit"      // file up to the Ministry, sign tasks
	PermFilingRead    Permission = "filing.read"        // filings and their exchange
	PermTaskRead      Permission = "task.read"          // verification tasks
	PermAccountManage Permission = "account.manage"     // lock and unlock accounts
	PermBindingManage Permission = "binding.manage"     // certificate bindings
	PermRoleGrant     Permission = "role.grant"         // grant and revoke business roles
	PermAuditRead     Permission = "audit.read"         // read the audit log
	PermSystemLogRead Permission = "log.system.read"    // read the system log (the hub's events)
	PermOpLogRead     Permission = "log.operation.read" // read the operation log (every user's API calls)
	// Portal: warnings and leads (bounded by the unit tree).
	PermWarningRead   Permission = "warning.read"   // warnings of the unit's subtree, their export
	PermWarningHandle Permission = "warning.handle" // sign, start, finish, transfer a warning
	PermLeadRead      Permission = "lead.read"      // leads of the unit's subtree
	PermLeadRegister  Permission = "lead.register"  // register a lead
	// Portal: inbox, notices, smart push.
	PermPortalUse    Permission = "portal.use"    // own inbox, notices addressed to one, own push rules
	PermNoticeManage Permission = "notice.manage" // author, publish and withdraw notices (units in scope)
	PermPushManage   Permission = "push.manage"   // units' push rules (units in scope)
	// City bus: dispatch orders (bounded by the unit tree) and feedback.
	PermDispatchRead Permission = "dispatch.read" // dispatch orders of the caller's units, their export
	PermFeedbackFile Permission = "feedback.file" // report a unit's feedback to the city bureau
)

// RolePermissions is the permission table: role → permissions.
//
//	officer     person.read filing.submit filing.read task.read portal.use
//	            warning.read warning.handle lead.read lead.register
//	            dispatch.read feedback.file
//	portaladmin portal.use notice.manage push.manage
//	unmask      person.unmask
//	sysadmin    account.manage log.system.read
//	secadmin  binding.manage role.grant
//	auditor   audit.read log.system.read log.operation.read
var RolePermissions = map[string][]Permission{
	RoleOfficer: {PermPersonRead, PermFilingSubmit, PermFilingRead, PermTaskRead, PermPortalUse,
		PermWarningRead, PermWarningHandle, PermLeadRead, PermLeadRegister, PermDispatchRead, PermFeedbackFile},
	RolePortalAdmin: {PermPortalUse, PermNoticeManage, PermPushManage},
	RoleUnmask:      {PermPersonUnmask},
	RoleSysAdmin:    {PermAccountManage, PermSystemLogRead},
	RoleSecAdmin:    {PermBindingManage, PermRoleGrant},
	RoleAuditor:     {PermAuditRead, PermSystemLogRead, PermOpLogRead},
}

// KnownRole reports whether role is in RolePermissions.
func KnownRole(role string) bool { _, ok := RolePermissions[role]; return ok }

// Permissions returns the permissions of an identity, sorted: the union of
// its roles' permissions, except that an administrator's role excludes
// every other role (see AdminRoles) and two of them give nothing.
func (id Identity) Permissions() []Permission {
	var admin []string
	for _, r := range id.Roles {
		if IsAdminRole(r) {
			admin = append(admin, r)
		}
	}
	roles := id.Roles
	switch len(admin) {
	case 0:
	case 1:
		roles = admin
	default:
		return nil
	}
	var out []Permission
	for _, r := range roles {
		for _, p := range RolePermissions[r] {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Can reports whether the identity has permission p.
func (id Identity) Can(p Permission) bool { return slices.Contains(id.Permissions(), p) }
