package silo

import (
	"slices"
	"sort"
)

// Role is a named set of permissions (SPEC §1). A user holds one or more.
type Role string

const (
	RoleAdmin         Role = "admin"
	RoleModelBuilder  Role = "model_builder"
	RoleDataCustodian Role = "data_custodian"
)

// Roles lists every role, in the order they are shown.
var Roles = []Role{RoleAdmin, RoleModelBuilder, RoleDataCustodian}

// RoleTitle is how the UI names a role.
func (r Role) Title() string {
	switch r {
	case RoleAdmin:
		return "Workspace Administrator"
	case RoleModelBuilder:
		return "Model Builder"
	case RoleDataCustodian:
		return "Data Custodian"
	}
	return string(r)
}

// Permission is one thing a request may do. Routes name the permission they
// need; roles and scoped tokens grant permissions.
type Permission string

const (
	PermUsersRead       Permission = "users:read"
	PermUsersManage     Permission = "users:manage"
	PermWorkspaceRead   Permission = "workspace:read"
	PermWorkspaceManage Permission = "workspace:manage"
	PermAuditRead       Permission = "audit:read"
	PermTokensOwn       Permission = "tokens:own"
	PermTokensManageAny Permission = "tokens:manage_any"
	PermRunnersRead     Permission = "runners:read"
	PermRunnersManage   Permission = "runners:manage"
	// PermRunnersLaunch starts and stops runners as processes on the
	// server's own machine: admins only, since such a runner reads files
	// there.
	PermRunnersLaunch  Permission = "runners:launch"
	PermDatasetsRead   Permission = "datasets:read"
	PermDatasetsManage Permission = "datasets:manage"
	PermSessionsRead   Permission = "sessions:read"
	PermSessionsManage Permission = "sessions:manage"
	PermModelsDownload Permission = "models:download"
	PermPredictionsRun Permission = "predictions:run"
)

// everyone holds these: every signed-in user may read runners and dataset
// metadata (never data), see the workspace and manage their own tokens.
var everyone = []Permission{PermWorkspaceRead, PermTokensOwn, PermRunnersRead, PermDatasetsRead}

// RolePermissions is the permission matrix of SPEC §1: the one place that says
// which role may do what. docs/permissions.md is written from it, and a test
// checks the two agree.
var RolePermissions = map[Role][]Permission{
	RoleAdmin: {
		PermUsersRead, PermUsersManage, PermWorkspaceManage, PermAuditRead, PermTokensManageAny,
		PermRunnersManage, PermRunnersLaunch, PermDatasetsManage, PermSessionsRead, PermSessionsManage,
		PermModelsDownload, PermPredictionsRun,
	},
	RoleModelBuilder: {
		PermRunnersManage, PermSessionsRead, PermSessionsManage, PermModelsDownload, PermPredictionsRun,
	},
	// A custodian's datasets:manage covers only datasets they own and
	// sessions:read only sessions that use them; the object-level checks
	// live with those resources.
	RoleDataCustodian: {PermDatasetsManage, PermSessionsRead},
}

// AllPermissions lists every permission, sorted.
func AllPermissions() []Permission {
	seen := map[Permission]bool{}
	for _, p := range everyone {
		seen[p] = true
	}
	for _, ps := range RolePermissions {
		for _, p := range ps {
			seen[p] = true
		}
	}
	out := make([]Permission, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// PermissionsOf returns the permissions granted by holding roles.
func PermissionsOf(roles []Role) []Permission {
	out := slices.Clone(everyone)
	for _, r := range roles {
		for _, p := range RolePermissions[r] {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// Can reports whether roles grant p.
func Can(roles []Role, p Permission) bool {
	return slices.Contains(PermissionsOf(roles), p)
}

// ValidPermission reports whether p is a known permission.
func ValidPermission(p Permission) bool {
	return slices.Contains(AllPermissions(), p)
}
