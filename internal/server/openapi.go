package server

import (
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
)

// handleOpenAPI serves an OpenAPI 3.1 document generated from the route
// table, with schemas derived from the Go types' JSON tags, so it describes
// exactly what the server serves.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, s.OpenAPI())
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// OpenAPI returns the API description as a JSON-ready map.
func (s *Server) OpenAPI() map[string]any {
	paths := map[string]map[string]any{}
	for _, rt := range s.routes {
		if rt.Page {
			continue
		}
		op := map[string]any{"summary": rt.Summary, "operationId": operationID(rt)}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.Path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.Access == AccessPublic {
			op["security"] = []any{}
		} else if rt.Access != AccessSignedIn {
			op["x-silo-permission"] = string(rt.Access)
		}
		if rt.In != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(rt.In))}}}
		}
		ok := map[string]any{"description": "success"}
		if rt.Out != nil {
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(rt.Out))}}
		}
		responses := map[string]any{"200": ok, "default": map[string]any{"description": "error", "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}}}
		op["responses"] = responses
		if paths[rt.Path] == nil {
			paths[rt.Path] = map[string]any{}
		}
		paths[rt.Path][strings.ToLower(rt.Method)] = op
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "Silo API", "version": silo.Version, "description": "Federated learning workspace. Authenticate with \"Authorization: Bearer <token>\" (silo tokens create) or a browser session cookie plus X-CSRF-Token."},
		"paths":   paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
			"schemas":         map[string]any{"Error": map[string]any{"type": "object", "properties": map[string]any{"error": schemaOf(reflect.TypeOf(silo.Error{}))}}},
		},
		"security": []any{map[string]any{"bearer": []any{}}},
	}
}

func operationID(rt Route) string {
	p := strings.NewReplacer("/api/v1/", "", "/", "_", "{", "", "}", "", ".", "_").Replace(strings.TrimPrefix(rt.Path, "/"))
	return strings.ToLower(rt.Method) + "_" + p
}

var timeType = reflect.TypeOf(time.Time{})

// schemaOf describes t as a JSON Schema, following encoding/json's rules.
func schemaOf(t reflect.Type) map[string]any {
	if t.Kind() == reflect.Pointer {
		return schemaOf(t.Elem())
	}
	if t == timeType {
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem())}
	case reflect.Struct:
		props := map[string]any{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			sc := schemaOf(f.Type)
			if strings.Contains(opts, "omitempty") {
				sc["x-optional"] = true
			}
			props[name] = sc
		}
		return map[string]any{"type": "object", "properties": props}
	}
	return map[string]any{}
}
