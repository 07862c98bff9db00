//! How a fan-out source's items compare between a run and a replay of it: paired by key, never by
//! position, so a reordered list still pairs the same items.

use serde_json::Value;

use super::InvocationRecord;

/// How one item of a fan-out's source compares between a run and a replay.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemChange {
    Same,
    Changed { before: Value, after: Value },
    OnlyBefore(Value),
    OnlyInReplay(Value),
}

/// One item in a keyed diff: its key, its label (the replay's, else the original's) and its change.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemDiff {
    pub key: String,
    pub label: Option<String>,
    pub change: ItemChange,
}

/// A fan-out source's returned items, the original's and the replay's, paired by their keys (never by
/// position: a reordered list pairs the same items): the original's order, then the replay's new
/// items in its order. `None` unless both name their items (a fan-out with a key or label) and both
/// returned lists.
pub fn item_diff(original: &InvocationRecord, replay: &InvocationRecord) -> Option<Vec<ItemDiff>> {
    let keyed = |record: &InvocationRecord| -> Option<Vec<(String, Option<String>, Value)>> {
        let names = &record.fanned_out.first()?.names;
        let items = record.output.as_ref()?.as_array()?;
        Some(
            items
                .iter()
                .zip(0..)
                .map(|(value, i)| {
                    (
                        names.key(i).into_owned(),
                        names.label(i).map(str::to_owned),
                        value.clone(),
                    )
                })
                .collect(),
        )
    };
    let before = keyed(original)?;
    let after = keyed(replay)?;
    let mut after_by_key: std::collections::HashMap<&str, (usize, &Option<String>, &Value)> = after
        .iter()
        .enumerate()
        .map(|(i, (key, label, value))| (key.as_str(), (i, label, value)))
        .collect();
    let mut diff = Vec::with_capacity(before.len().max(after.len()));
    for (key, label, value) in &before {
        let change = match after_by_key.remove(key.as_str()) {
            Some((_, new_label, new)) => {
                let label = new_label.clone().or_else(|| label.clone());
                let change = if new == value {
                    ItemChange::Same
                } else {
                    ItemChange::Changed {
                        before: value.clone(),
                        after: new.clone(),
                    }
                };
                diff.push(ItemDiff {
                    key: key.clone(),
                    label,
                    change,
                });
                continue;
            }
            None => ItemChange::OnlyBefore(value.clone()),
        };
        diff.push(ItemDiff {
            key: key.clone(),
            label: label.clone(),
            change,
        });
    }
    let mut added: Vec<(usize, &String, &Option<String>, &Value)> = after_by_key
        .into_iter()
        .map(|(_, (i, label, value))| (i, &after[i].0, label, value))
        .collect();
    added.sort_by_key(|(i, ..)| *i);
    diff.extend(added.into_iter().map(|(_, key, label, value)| ItemDiff {
        key: key.clone(),
        label: label.clone(),
        change: ItemChange::OnlyInReplay(value.clone()),
    }));
    Some(diff)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::model::{BlockId, TransitionId};
    use crate::run::{FannedOut, ItemNames, RunId};

    /// Gen's record returning `items`, named by `keys` (its labels: the keys in capitals).
    fn source(items: Value, keys: &[&str]) -> InvocationRecord {
        let mut record =
            InvocationRecord::succeeded(&RunId("r".into()), 1, &BlockId("gen".into()), &[]);
        record.output = Some(items);
        let labels: Vec<String> = keys.iter().map(|k| k.to_uppercase()).collect();
        let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
        record.fanned_out = vec![FannedOut {
            transition: TransitionId("out".into()),
            names: Arc::new(ItemNames::new(Some(keys), Some(labels))),
        }];
        record
    }

    #[test]
    fn a_reordered_list_pairs_its_items_by_key() {
        let before = source(json!([1, 2, 3, 4]), &["a", "b", "c", "d"]);
        // Reordered, `c` changed, `d` gone, `e` new.
        let after = source(json!([5, 30, 1, 2]), &["e", "c", "a", "b"]);
        let diff = item_diff(&before, &after).expect("both name their items");
        let seen: Vec<(&str, Option<&str>, &ItemChange)> = diff
            .iter()
            .map(|d| (d.key.as_str(), d.label.as_deref(), &d.change))
            .collect();
        assert_eq!(
            seen,
            [
                ("a", Some("A"), &ItemChange::Same),
                ("b", Some("B"), &ItemChange::Same),
                (
                    "c",
                    Some("C"),
                    &ItemChange::Changed {
                        before: json!(3),
                        after: json!(30)
                    }
                ),
                ("d", Some("D"), &ItemChange::OnlyBefore(json!(4))),
                ("e", Some("E"), &ItemChange::OnlyInReplay(json!(5))),
            ]
        );
    }

    #[test]
    fn items_without_names_are_not_diffed_by_key() {
        let named = source(json!([1]), &["a"]);
        let mut unnamed = named.clone();
        unnamed.fanned_out.clear();
        assert_eq!(item_diff(&named, &unnamed), None);
        assert_eq!(item_diff(&unnamed, &named), None);
    }
}
