//! [`SpecBuilder`]: a variant of a known spec, made by editing its TOML and
//! validating the result, so a test that needs "the reference, but with
//! uid 0" gets exactly what the file would give it: the validation error,
//! never a `Spec` that skipped the checks.

use toml::{Table, Value};

use crate::{raw::RawSpec, validate, Spec, SpecError, REFERENCE_TOML};

/// Edits a spec's TOML, then validates it like [`Spec::from_toml_str`].
///
/// Paths name fields the way [`SpecError::field`] does: `server.uid`,
/// `users[1].name`. Setting a field the file does not have adds it, so a
/// misspelt path is refused at [`SpecBuilder::build`] as the unknown field
/// it is. The first edit that cannot be made (a path through a value that is
/// not a table, an array entry that does not exist) is reported by
/// [`SpecBuilder::build`] as [`SpecError::Edit`]; later edits are then
/// ignored.
///
/// ```
/// use appliance_spec::SpecBuilder;
///
/// let spec = SpecBuilder::reference()
///     .set("server.port", 7000)
///     .add_visitor("sensor", "sensor-pass", "sensor:readings")
///     .build()?;
/// assert_eq!(spec.server().port(), 7000);
/// assert_eq!(spec.visitors().len(), 2);
///
/// let root = SpecBuilder::reference().set("server.uid", 0).build();
/// assert_eq!(root.unwrap_err().field(), Some("server.uid"));
/// # Ok::<(), appliance_spec::SpecError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SpecBuilder {
    /// The document being edited, or the first thing that went wrong.
    document: Result<Table, SpecError>,
}

impl SpecBuilder {
    /// Starts from a spec's TOML text. Text that is not TOML is reported by
    /// [`SpecBuilder::build`].
    pub fn from_toml_str(text: &str) -> SpecBuilder {
        SpecBuilder {
            document: toml::from_str(text).map_err(SpecError::from),
        }
    }

    /// Starts from the seed-000 reference deployment ([`REFERENCE_TOML`]).
    pub fn reference() -> SpecBuilder {
        SpecBuilder::from_toml_str(REFERENCE_TOML)
    }

    /// Sets the field at `path` to `value` (a string, integer or boolean),
    /// adding it when it is not there.
    #[must_use]
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> SpecBuilder {
        if let Ok(document) = &mut self.document {
            if let Err(reason) = set_at(document, path, value.into()) {
                self.document = Err(SpecError::Edit {
                    path: path.to_owned(),
                    reason,
                });
            }
        }
        self
    }

    /// Appends an append-only user: `name`, its password's metadata key
    /// `secret`, and the one `stream` it may append to.
    #[must_use]
    pub fn add_visitor(mut self, name: &str, secret: &str, stream: &str) -> SpecBuilder {
        if let Ok(document) = &mut self.document {
            let user = Table::from_iter([
                ("name".to_owned(), Value::from(name)),
                ("role".to_owned(), Value::from("append-only")),
                ("secret".to_owned(), Value::from(secret)),
                ("stream".to_owned(), Value::from(stream)),
            ]);
            match document
                .entry("users")
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(users) => users.push(Value::Table(user)),
                _ => {
                    self.document = Err(SpecError::Edit {
                        path: "users".to_owned(),
                        reason: "is not an array of tables",
                    })
                }
            }
        }
        self
    }

    /// Validates the edited spec.
    ///
    /// # Errors
    ///
    /// What [`Spec::from_toml_str`] would return for the edited file, or
    /// [`SpecError::Edit`] for an edit that could not be made.
    pub fn build(self) -> Result<Spec, SpecError> {
        let raw: RawSpec = self.document?.try_into()?;
        validate::validate(raw)
    }
}

/// One path segment: `key` or `key[index]`.
fn segment(text: &str) -> Result<(&str, Option<usize>), &'static str> {
    let (key, index) = match text.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((key, index)) => (
            key,
            Some(
                index
                    .parse()
                    .map_err(|_| "has an index that is not a number")?,
            ),
        ),
        None => (text, None),
    };
    if key.is_empty() {
        return Err("has an empty key");
    }
    Ok((key, index))
}

fn array_entry<'t>(
    table: &'t mut Table,
    key: &str,
    index: usize,
) -> Result<&'t mut Value, &'static str> {
    table
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .ok_or("indexes a value that is not an array")?
        .get_mut(index)
        .ok_or("indexes past the end of the array")
}

fn set_at(document: &mut Table, path: &str, value: Value) -> Result<(), &'static str> {
    let (parents, last) = match path.rsplit_once('.') {
        Some((parents, last)) => (parents.split('.').collect(), last),
        None => (Vec::new(), path),
    };
    let mut table = document;
    for parent in parents {
        let child = match segment(parent)? {
            (key, None) => table
                .entry(key)
                .or_insert_with(|| Value::Table(Table::new())),
            (key, Some(index)) => array_entry(table, key, index)?,
        };
        table = child
            .as_table_mut()
            .ok_or("leads through a value that is not a table")?;
    }
    match segment(last)? {
        (key, None) => {
            table.insert(key.to_owned(), value);
        }
        (key, Some(index)) => *array_entry(table, key, index)? = value,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::User;

    #[test]
    fn edits_reach_the_spec_through_validation() {
        let spec = SpecBuilder::reference()
            .set("appliance.name", "other")
            .set("users[1].stream", "other:stream")
            .set("firewall.icmp_echo", false)
            .build()
            .unwrap();
        assert_eq!(spec.name(), "other");
        assert_eq!(spec.visitors()[0].stream(), "other:stream");
        assert!(!spec.firewall().icmp_echo());
        assert_eq!(spec, {
            let mut text = REFERENCE_TOML.replacen("patchworks", "other", 1);
            text = text.replacen("ruach:stream:contact", "other:stream", 1);
            text = text.replacen("icmp_echo = true", "icmp_echo = false", 1);
            Spec::from_toml_str(&text).unwrap()
        });
    }

    #[test]
    fn the_reference_builds_to_the_reference() {
        assert_eq!(
            SpecBuilder::reference().build().unwrap(),
            Spec::reference().unwrap()
        );
    }

    /// (path, value, what `build` says: the field an `Invalid` names, or the
    /// text a `Syntax` or `Edit` error contains)
    const REFUSED: &[(&str, i64, &str)] = &[
        ("server.uid", 0, "field server.uid"),
        ("limits.maxclients", 0, "field limits.maxclients"),
        ("server.shell", 1, "unknown field `shell`"),
        ("cron.job", 1, "unknown field `cron`"),
        ("server.port", -1, "server.port"),
        ("users[2].name", 1, "indexes past the end"),
        ("server.port.x", 1, "not a table"),
        ("server[0].port", 1, "not an array"),
        ("users[x].name", 1, "not a number"),
        ("server..port", 1, "empty key"),
    ];

    #[test]
    fn bad_edits_are_refused() {
        for (path, value, want) in REFUSED {
            let err = SpecBuilder::reference()
                .set(path, *value)
                .build()
                .unwrap_err();
            match want.strip_prefix("field ") {
                Some(field) => assert_eq!(err.field(), Some(field), "{path}: {err}"),
                None => {
                    assert_eq!(err.field(), None, "{path}: {err}");
                    assert!(err.to_string().contains(want), "{path}: {err}");
                }
            }
        }
        // The first bad edit is the one reported; later ones change nothing.
        let err = SpecBuilder::reference()
            .set("users[9].name", "x")
            .set("server.uid", 0)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("users[9].name"), "{err}");
        let err = SpecBuilder::from_toml_str("[server").build().unwrap_err();
        assert!(matches!(err, SpecError::Syntax(_)), "{err}");
    }

    #[test]
    fn visitors_are_appended_in_order() {
        let spec = SpecBuilder::reference()
            .add_visitor("a", "a-pass", "a:s")
            .add_visitor("b", "b-pass", "b:s")
            .build()
            .unwrap();
        let names: Vec<&str> = spec.users().map(User::name).collect();
        assert_eq!(names, ["admin", "ruachtov-ai-visitors", "a", "b"]);
        let err = SpecBuilder::reference()
            .add_visitor("admin", "x-pass", "x")
            .build()
            .unwrap_err();
        assert_eq!(err.field(), Some("users[2].name"), "{err}");
        let err = SpecBuilder::reference()
            .set("users", 1)
            .add_visitor("a", "a-pass", "a:s")
            .build()
            .unwrap_err();
        assert!(matches!(err, SpecError::Edit { .. }), "{err}");
    }
}
