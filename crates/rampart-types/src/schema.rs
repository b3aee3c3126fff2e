//! OpenAPI schemas of the types clients see. These types serialize by hand (a bare string),
//! so their schemas are written by hand too, with the same rules their `parse` applies.

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;

pub(crate) fn string_schema(description: &str, pattern: Option<String>, values: Option<Vec<&str>>) -> RefOr<Schema> {
    let mut b = ObjectBuilder::new().schema_type(Type::String).description(Some(description)).pattern(pattern);
    if let Some(values) = values {
        b = b.enum_values(Some(values));
    }
    b.into()
}

impl utoipa::PartialSchema for crate::Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339, UTC"))
            .into()
    }
}
impl utoipa::ToSchema for crate::Timestamp {}

impl utoipa::PartialSchema for crate::Permission {
    fn schema() -> RefOr<Schema> {
        let names: Vec<&str> = crate::Permission::ALL.iter().map(|p| p.as_str()).collect();
        string_schema("a permission name", None, Some(names))
    }
}
impl utoipa::ToSchema for crate::Permission {}

impl utoipa::PartialSchema for crate::AuthSource {
    fn schema() -> RefOr<Schema> {
        let all = [crate::AuthSource::Local, crate::AuthSource::Ldap, crate::AuthSource::Oidc];
        string_schema("who checks the account's logins", None, Some(all.iter().map(|s| s.as_str()).collect()))
    }
}
impl utoipa::ToSchema for crate::AuthSource {}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    #[test]
    fn name_patterns_accept_what_parse_accepts() {
        let schema = serde_json::to_value(crate::Username::schema()).unwrap_or_default();
        assert_eq!(schema["pattern"], "^[a-z0-9._@-]{1,64}$");
        let id = serde_json::to_value(crate::AlertId::schema()).unwrap_or_default();
        assert_eq!(id["pattern"], "^alert-[0-9a-f]{24}$");
    }
}
