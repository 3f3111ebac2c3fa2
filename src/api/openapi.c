/* The OpenAPI 3.1 document served at /openapi.json, generated from the route tables:
 * every route's path, method, parameters (with the same bounds and defaults the
 * validator enforces, since both read the api_param records), request body, responses
 * and authentication. Response schemas are summarised by their fields. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "util/jsonx.h"
#include "util/mem.h"

/* ------------------------------------------------------------------ schemas */

static json_t *type_schema(const char *type, int nullable) {
    static const struct {
        const char *short_name, *type, *format;
    } TYPES[] = {{"int", "integer", NULL}, {"num", "number", NULL},  {"str", "string", NULL},
                 {"bool", "boolean", NULL}, {"time", "string", "date-time"},
                 {"obj", "object", NULL},  {"arr", "array", NULL}};
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) {
        if (strcmp(TYPES[i].short_name, type) != 0) continue;
        json_t *s = json_object();
        json_object_set_new(s, "type", nullable ? json_pack("[ss]", TYPES[i].type, "null")
                                                : json_string(TYPES[i].type));
        if (TYPES[i].format) json_object_set_new(s, "format", json_string(TYPES[i].format));
        return s;
    }
    return json_object(); /* unknown short type: any value */
}

/* An object schema from "name:type,name:type?,..." ('?' = nullable; a type starting
 * with '#' refers to another schema, '[#X' to an array of them). */
static json_t *object_schema(const char *spec) {
    json_t *props = json_object();
    char *copy = xstrdup(spec), *save = NULL;
    for (char *field = strtok_r(copy, ",", &save); field; field = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(field, ':');
        if (!colon) continue;
        *colon = '\0';
        char *type = colon + 1;
        size_t n = strlen(type);
        int nullable = n && type[n - 1] == '?';
        if (nullable) type[n - 1] = '\0';
        json_t *s;
        if (type[0] == '#') {
            char *ref = xasprintf("#/components/schemas/%s", type + 1);
            s = json_pack("{ss}", "$ref", ref);
            free(ref);
        } else if (type[0] == '[' && type[1] == '#') {
            char *ref = xasprintf("#/components/schemas/%s", type + 2);
            s = json_pack("{ss{ss}}", "type", "array", "items", "$ref", ref);
            free(ref);
        } else {
            s = type_schema(type, nullable);
        }
        json_object_set_new(props, field, s);
    }
    free(copy);
    return json_pack("{ssso}", "type", "object", "properties", props);
}

#define STR_(x) #x
#define COUNTER_SPEC(n) "," STR_(n) ":int"
#define RUN_COMMON                                                                      \
    "id:int,started_at:time,completed_at:time?,status:str,current_phase:str,dry_run:bool," \
    "stories_ready:bool,error_count:int,duration_seconds:num?"                          \
    RUN_ALL_COUNTERS(COUNTER_SPEC)

static const struct {
    const char *name, *spec;
} SCHEMAS[] = {
    {"HTTPError", "detail:str"},
    {"ValidationError", "type:str,loc:arr,msg:str,input:obj?,ctx:obj?"},
    {"HTTPValidationError", "detail:[#ValidationError"},
    {"PipelineRunResponse", "run_id:int,status:str,message:str"},
    {"PipelineStatus", RUN_COMMON ",error_message:str?,date_from:time?,date_to:time?,"
                       "auto_create_stories:bool,days:int?,max_conversations:int?,concurrency:int,batch:bool,"
                       "errors:[#RunError,warnings:arr,llm:obj"},
    {"RunError", "phase:str,message:str,details:obj?"},
    {"PipelineRunListItem", RUN_COMMON},
    {"DryRunPreview", "run_id:int,classification_breakdown:obj,samples:arr,top_themes:arr,"
                      "total_classified:int,timestamp:time"},
    {"ActiveRun", "active:bool,run_id:int?,status:str?"},
    {"StopResponse", "run_id:int,status:str,message:str"},
    {"JobResponse", "run_id:int,status:str,message:str"},
    {"Theme", "issue_signature:str,product_area:str,component:str,occurrence_count:int,"
              "run_count:int,first_seen_at:time,last_seen_at:time,sample_user_intent:str?,"
              "sample_symptoms:arr,sample_affected_flow:str?,sample_root_cause_hypothesis:str?"},
    {"ThemeList", "themes:[#Theme,total:int,limit:int,offset:int,days:int,min_occurrences:int,"
                  "threshold:int"},
    {"ThemeDetail", "theme:#Theme,conversation_ids:arr,conversations:arr"},
    {"Story", "id:int,run_id:int,title:str,description:str,signature:str,product_area:str,"
              "component:str,action_type:str,direction:str,status:str,confidence_score:num,"
              "conversation_count:int,grouping_method:str,cluster_id:str?,origin:str,"
              "created_at:time,updated_at:time,conversation_ids:arr"},
    {"StoryList", "stories:[#Story,total:int,limit:int,offset:int"},
    {"StoryDetail", "id:int,title:str,signature:str,product_area:str,conversation_ids:arr,"
                    "evidence:[#Evidence"},
    {"Evidence", "conversation_id:str,signature:str,excerpt:str,digest:str?,source_url:str?,"
                 "subject:str?,created_at:time?"},
    {"Health", "status:str,timestamp:time"},
    {"HealthDb", "connected:bool,latency_ms:num?,error:str?"},
    {"HealthFull", "status:str,timestamp:time,database:#HealthDb"},
};

static json_t *components(void) {
    json_t *schemas = json_object();
    for (size_t i = 0; i < sizeof SCHEMAS / sizeof SCHEMAS[0]; i++)
        json_object_set_new(schemas, SCHEMAS[i].name, object_schema(SCHEMAS[i].spec));
    json_t *run_status = json_object_get(json_object_get(schemas, "PipelineStatus"), "properties");
    json_object_set_new(json_object_get(run_status, "status"), "enum",
                        json_pack("[sssss]", "running", "stopping", "stopped", "completed",
                                  "failed"));
    return json_pack("{sos{s{ssssss}}}", "schemas", schemas, "securitySchemes", "bearerAuth",
                     "type", "http", "scheme", "bearer", "description",
                     "Applies when tokens are configured (FEEDLINE_API_TOKEN, FEEDLINE_API_TOKENS, "
                     "FEEDLINE_API_TOKENS_FILE, FEEDLINE_METRICS_TOKEN). Each operation names "
                     "the role it needs: read (a read or operate token), operate (an operate "
                     "token) or metrics (a metrics, read or operate token). A missing or "
                     "unknown token is 401, a token whose role is not enough 403; operations "
                     "with an empty security list are open.");
}

/* ------------------------------------------------------------------ operations */

static json_t *param_schema(const api_param *p) {
    json_t *s = json_object();
    const char *type = p->type == API_T_INT    ? "integer"
                       : p->type == API_T_BOOL ? "boolean"
                                               : "string";
    json_object_set_new(s, "type", (p->flags & API_P_NULLABLE) ? json_pack("[ss]", type, "null")
                                                               : json_string(type));
    if (p->type == API_T_TIME) json_object_set_new(s, "format", json_string("date-time"));
    if (p->type == API_T_INT) {
        if (p->flags & API_P_MIN) json_object_set_new(s, "minimum", json_integer(p->min));
        if (p->flags & API_P_MAX) json_object_set_new(s, "maximum", json_integer(p->max));
        if (p->flags & API_P_DEFAULT) json_object_set_new(s, "default", json_integer(p->dflt));
    } else if (p->type == API_T_BOOL && (p->flags & API_P_DEFAULT)) {
        json_object_set_new(s, "default", json_boolean(p->dflt));
    } else if (p->type == API_T_STR && (p->flags & API_P_MAX)) {
        json_object_set_new(s, "maxLength", json_integer(p->max));
    } else if (p->type == API_T_ENUM) {
        json_t *e = json_array();
        for (size_t i = 0; p->choices[i]; i++) json_array_append_new(e, json_string(p->choices[i]));
        if (p->flags & API_P_NULLABLE) json_array_append_new(e, json_null());
        json_object_set_new(s, "enum", e);
    }
    if (p->str_dflt) json_object_set_new(s, "default", json_string(p->str_dflt));
    if (p->description) json_object_set_new(s, "description", json_string(p->description));
    return s;
}

static json_t *parameters(const api_route *rt) {
    json_t *arr = json_array();
    for (size_t i = 0; rt->params && rt->params[i]; i++) {
        const api_param *p = rt->params[i];
        int path = strcmp(p->in, "path") == 0;
        json_array_append_new(arr, json_pack("{sssssbso}", "name", p->name, "in", p->in,
                                             "required", path, "schema", param_schema(p)));
    }
    return arr;
}

static json_t *request_body(const api_route *rt) {
    json_t *props = json_object(), *required = json_array();
    for (size_t i = 0; rt->body[i]; i++) {
        json_object_set_new(props, rt->body[i]->name, param_schema(rt->body[i]));
        if (rt->body[i]->flags & API_P_REQUIRED)
            json_array_append_new(required, json_string(rt->body[i]->name));
    }
    json_t *schema = json_pack("{ssso}", "type", "object", "properties", props);
    if (json_array_size(required)) json_object_set_new(schema, "required", required);
    else json_decref(required);
    return json_pack("{sbs{s{so}}}", "required", 1, "content", "application/json", "schema",
                     schema);
}

static const char *reason(int code) {
    switch (code) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Not authenticated (bearer token missing or unknown)";
    case 403: return "Forbidden (the token's role does not allow this operation)";
    case 404: return "Not Found";
    case 409: return "Conflict (another run is active)";
    case 413: return "Request body too large";
    case 422: return "Validation error";
    case 503: return "Busy or shutting down";
    default: return "Response";
    }
}

static json_t *responses(const api_route *rt) {
    json_t *out = json_object();
    char *copy = xstrdup(rt->responses), *save = NULL;
    for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        int code = atoi(tok);
        const char *schema = code == 422 ? "HTTPValidationError"
                             : code >= 400 ? "HTTPError"
                                           : rt->response_schema;
        const char *ctype = code < 400 && rt->content_type ? rt->content_type : "application/json";
        json_t *s = json_object();
        if (schema) {
            char *ref = xasprintf("#/components/schemas/%s", schema);
            json_object_set_new(s, "$ref", json_string(ref));
            free(ref);
        }
        json_object_set_new(out, tok, json_pack("{sss{s{so}}}", "description", reason(code),
                                                "content", ctype, "schema", s));
    }
    free(copy);
    static const int AUTH_CODES[] = {401, 403};
    for (size_t i = 0; rt->access != API_ACCESS_OPEN && i < 2; i++) {
            /* every guarded route can answer these */
            int code = AUTH_CODES[i];
            char key[8];
            snprintf(key, sizeof key, "%d", code);
            json_object_set_new(out, key, json_pack("{sss{s{s{ss}}}}", "description",
                                                    reason(code), "content", "application/json",
                                                    "schema", "$ref",
                                                    "#/components/schemas/HTTPError"));
        }
    return out;
}

/* The role an operation needs when tokens are configured (OpenAPI 3.1 lets a non-OAuth
 * requirement list role names); an empty list marks an open one. */
static json_t *security(const api_route *rt) {
    const char *role = rt->access == API_ACCESS_OPERATE   ? "operate"
                       : rt->access == API_ACCESS_METRICS ? "metrics"
                       : rt->access == API_ACCESS_OPEN    ? NULL
                                                          : "read";
    if (!role) return json_array();
    return json_pack("[{s[s]}]", "bearerAuth", role);
}

static char *operation_id(const api_route *rt) {
    buf_t b = BUF_INIT;
    for (const char *m = rt->method; *m; m++) buf_putc(&b, (char)tolower((unsigned char)*m));
    for (const char *p = rt->pattern; *p; p++)
        buf_putc(&b, isalnum((unsigned char)*p) ? *p : '_');
    return buf_detach(&b);
}

static json_t *operation(const api_route *rt) {
    char *id = operation_id(rt);
    json_t *op = json_pack("{sss[s]ssso}", "summary", rt->summary, "tags", rt->tag, "operationId",
                           id, "parameters", parameters(rt));
    free(id);
    if (rt->body) json_object_set_new(op, "requestBody", request_body(rt));
    json_object_set_new(op, "security", security(rt));
    json_object_set_new(op, "responses", responses(rt));
    return op;
}

json_t *api_openapi_document(const api_server *srv) {
    json_t *paths = json_object();
    for (size_t i = 0; i < srv->nroutes; i++) {
        const api_route *rt = srv->routes[i];
        json_t *item = json_object_get(paths, rt->pattern);
        if (!item) {
            item = json_object();
            json_object_set_new(paths, rt->pattern, item);
        }
        char method[8];
        size_t k = 0;
        for (; rt->method[k] && k < sizeof method - 1; k++)
            method[k] = (char)tolower((unsigned char)rt->method[k]);
        method[k] = '\0';
        json_object_set_new(item, method, operation(rt));
    }
    return json_pack("{sss{ssssss}soso}", "openapi", "3.1.0", "info", "title", "feedline API",
                     "version", "1.0.0", "description",
                     "Turns support conversations into product stories. Errors are "
                     "{\"detail\": ...}; validation errors are 422 in FastAPI form.",
                     "paths", paths, "components", components());
}
