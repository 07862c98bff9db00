//! What a fan-out calls its items: a key that identifies an item across runs (its index unless the
//! fan-out gives a key expression) and a label people read.

use std::borrow::Cow;
use std::sync::Arc;

use rustc_hash::{FxBuildHasher, FxHashMap};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ItemPath;

/// The keys and labels one fan-out gave its items, kept once for all of them: every record of an item
/// points here with its index ([`ItemName`]), so a fan-out of a million items makes one allocation for
/// their names, not two million.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemNames {
    /// `None`: each item's index is its key.
    keys: Option<Texts>,
    /// `None`: the items have no labels.
    labels: Option<Texts>,
}

/// Many short texts in one buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Texts {
    text: String,
    /// Where each text ends in `text`.
    ends: Vec<usize>,
}

impl Texts {
    fn new<S: AsRef<str>>(texts: impl IntoIterator<Item = S>) -> Self {
        let mut list = Self::default();
        for text in texts {
            list.text.push_str(text.as_ref());
            list.ends.push(list.text.len());
        }
        list
    }

    fn get(&self, index: u32) -> Option<&str> {
        let index = index as usize;
        let end = *self.ends.get(index)?;
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        self.text.get(start..end)
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len() as u32).map(|i| self.get(i).unwrap_or_default())
    }
}

/// A list of texts, written and read straight from the buffer: a fan-out's 100,000 names cross from
/// the worker and into the history without a `String` each.
impl Serialize for Texts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(TextsVisitor)
    }
}

struct TextsVisitor;

impl<'de> Visitor<'de> for TextsVisitor {
    type Value = Texts;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of texts")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Texts, A::Error> {
        let mut texts = Texts::default();
        texts.ends.reserve(seq.size_hint().unwrap_or(0));
        while seq.next_element_seed(Append(&mut texts.text))?.is_some() {
            texts.ends.push(texts.text.len());
        }
        Ok(texts)
    }
}

/// Appends one text of a list to the buffer.
struct Append<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for Append<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Append<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a text")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        self.0.push_str(text);
        Ok(())
    }
}

impl ItemNames {
    /// Names from a fan-out's expressions: `keys` and `labels` one per item when given.
    pub fn new<S: AsRef<str>>(
        keys: Option<impl IntoIterator<Item = S>>,
        labels: Option<impl IntoIterator<Item = S>>,
    ) -> Self {
        Self {
            keys: keys.map(Texts::new),
            labels: labels.map(Texts::new),
        }
    }

    /// Items named by nothing but their index.
    pub fn indexed() -> Self {
        Self::default()
    }

    /// Whether the items have keys of their own (not their indices).
    pub fn has_keys(&self) -> bool {
        self.keys.is_some()
    }

    pub fn has_labels(&self) -> bool {
        self.labels.is_some()
    }

    /// How many items the expressions named (`None` when neither was given).
    pub fn named_items(&self) -> Option<usize> {
        self.keys.as_ref().or(self.labels.as_ref()).map(Texts::len)
    }

    /// Item `index`'s key: its key text, or its index as text.
    pub fn key(&self, index: u32) -> Cow<'_, str> {
        match self.keys.as_ref().and_then(|keys| keys.get(index)) {
            Some(key) => Cow::Borrowed(key),
            None => Cow::Owned(index.to_string()),
        }
    }

    pub fn label(&self, index: u32) -> Option<&str> {
        self.labels.as_ref()?.get(index)
    }

    /// The keys given to more than one item, each with the items that have it, in the order the
    /// keys first appear.
    pub fn duplicate_keys(&self) -> Vec<(&str, Vec<u32>)> {
        let Some(keys) = &self.keys else {
            return Vec::new();
        };
        let mut first: FxHashMap<&str, u32> =
            FxHashMap::with_capacity_and_hasher(keys.len(), FxBuildHasher);
        let mut twice: Vec<(&str, Vec<u32>)> = Vec::new();
        for index in 0..keys.len() as u32 {
            let key = keys.get(index).unwrap_or_default();
            match first.get(key) {
                None => {
                    first.insert(key, index);
                }
                Some(&earlier) => match twice.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, items)) => items.push(index),
                    None => twice.push((key, vec![earlier, index])),
                },
            }
        }
        twice
    }
}

/// One item's name: its fan-out's names and its index among them.
#[derive(Clone, Debug)]
pub struct ItemName {
    names: Arc<ItemNames>,
    index: u32,
}

impl ItemName {
    pub fn new(names: Arc<ItemNames>, index: u32) -> Self {
        Self { names, index }
    }

    /// A name of its own (read back from the history): the key and label given.
    pub fn single(key: &str, label: Option<&str>) -> Self {
        Self {
            names: Arc::new(ItemNames::new(Some([key]), label.map(|l| [l]))),
            index: 0,
        }
    }

    pub fn key(&self) -> Cow<'_, str> {
        self.names.key(self.index)
    }

    pub fn label(&self) -> Option<&str> {
        self.names.label(self.index)
    }

    /// Whether the key is the fan-out's own (not the item's index).
    pub fn has_key(&self) -> bool {
        self.names.has_keys()
    }

    /// The label, or else the key: what a view writes for the item.
    pub fn shown(&self) -> Cow<'_, str> {
        self.label().map_or_else(|| self.key(), Cow::Borrowed)
    }
}

impl PartialEq for ItemName {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key() && self.label() == other.label()
    }
}

#[derive(Serialize, Deserialize)]
struct ItemNameFields<'a> {
    key: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<Cow<'a, str>>,
}

impl Serialize for ItemName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ItemNameFields {
            key: self.key(),
            label: self.label().map(Cow::Borrowed),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ItemName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = ItemNameFields::deserialize(deserializer)?;
        Ok(Self::single(&fields.key, fields.label.as_deref()))
    }
}

/// An invocation's item names, outermost first: one per level of its item path when a fan-out around it
/// names its items; none otherwise (its indices are its keys).
pub type ItemNamePath = smallvec::SmallVec<[ItemName; 1]>;

/// The keys of an item, outermost first: its names' keys, or its indices as text.
pub fn key_path<'a>(path: &ItemPath, names: &'a [ItemName]) -> Vec<Cow<'a, str>> {
    if names.len() == path.len() {
        names.iter().map(ItemName::key).collect()
    } else {
        path.iter().map(|i| Cow::Owned(i.to_string())).collect()
    }
}

/// The names one fan-out transition gave the items of an invocation's return value: what a redrive
/// carries over with the value, so the items keep their keys without running the expressions again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FannedOut {
    pub transition: crate::model::TransitionId,
    #[serde(with = "names_serde")]
    pub names: Arc<ItemNames>,
}

/// `ItemNames` as `{"keys": [...] | null, "labels": [...] | null}`.
mod names_serde {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{ItemNames, Texts};

    #[derive(Serialize)]
    struct Lists<'a> {
        keys: Option<&'a Texts>,
        labels: Option<&'a Texts>,
    }

    #[derive(Deserialize)]
    struct OwnedLists {
        keys: Option<Texts>,
        labels: Option<Texts>,
    }

    pub fn serialize<S: Serializer>(
        names: &Arc<ItemNames>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        Lists {
            keys: names.keys.as_ref(),
            labels: names.labels.as_ref(),
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Arc<ItemNames>, D::Error> {
        let OwnedLists { keys, labels } = OwnedLists::deserialize(deserializer)?;
        Ok(Arc::new(ItemNames { keys, labels }))
    }
}

/// `ItemNames` as the pair `[keys, labels]`, each a list of texts or `null`: how a worker sends the
/// names one fan-out gave its items (`#[serde(with = "names_pair")]`).
pub mod names_pair {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{ItemNames, Texts};

    pub fn serialize<S: Serializer>(names: &ItemNames, serializer: S) -> Result<S::Ok, S::Error> {
        (names.keys.as_ref(), names.labels.as_ref()).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ItemNames, D::Error> {
        let (keys, labels) = <(Option<Texts>, Option<Texts>)>::deserialize(deserializer)?;
        Ok(ItemNames { keys, labels })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_default_to_the_index_and_labels_to_none() {
        let names = ItemNames::new(Some(["a", "b", "c"]), None::<[&str; 0]>);
        assert_eq!(names.key(1), "b");
        assert_eq!(names.label(1), None);
        let indexed = ItemNames::indexed();
        assert_eq!(indexed.key(7), "7");
        assert!(!indexed.has_keys());
        let labelled = ItemNames::new(None::<[&str; 0]>, Some(["Paris", "", "Oslo"]));
        assert_eq!(labelled.key(2), "2");
        assert_eq!(labelled.label(2), Some("Oslo"));
        assert_eq!(labelled.label(1), Some(""));
        assert_eq!(labelled.named_items(), Some(3));
    }

    #[test]
    fn duplicate_keys_are_listed_with_their_items_in_first_seen_order() {
        let names = ItemNames::new(Some(["x", "y", "x", "z", "y", "x"]), None::<[&str; 0]>);
        assert_eq!(
            names.duplicate_keys(),
            [("x", vec![0, 2, 5]), ("y", vec![1, 4])]
        );
        assert!(ItemNames::indexed().duplicate_keys().is_empty());
    }

    #[test]
    fn an_item_name_serialises_as_key_and_label_and_reads_back_equal() {
        let names = Arc::new(ItemNames::new(Some(["k1", "k2"]), Some(["one", "two"])));
        let name = ItemName::new(names, 1);
        let json = serde_json::to_value(&name).unwrap();
        assert_eq!(json, serde_json::json!({"key": "k2", "label": "two"}));
        let back: ItemName = serde_json::from_value(json).unwrap();
        assert_eq!(back, name);
        assert_eq!(back.shown(), "two");
    }

    #[test]
    fn names_cross_as_lists_of_texts_and_read_back_equal() {
        #[derive(Serialize, Deserialize)]
        struct Pair(#[serde(with = "names_pair")] ItemNames);

        let names = ItemNames::new(
            Some(["a\"b", "é\\n", ""]),
            Some(["line\nbreak", "tab\t", "Zürich"]),
        );
        let fanned = FannedOut {
            transition: crate::model::TransitionId("t".into()),
            names: Arc::new(names.clone()),
        };
        let json = serde_json::to_value(&fanned).unwrap();
        assert_eq!(
            json["names"],
            serde_json::json!({
                "keys": ["a\"b", "é\\n", ""],
                "labels": ["line\nbreak", "tab\t", "Zürich"]
            })
        );
        let back: FannedOut = serde_json::from_value(json).unwrap();
        assert_eq!(back, fanned);

        let keys_only = ItemNames::new(Some(["x", "y"]), None::<[&str; 0]>);
        let text = serde_json::to_string(&Pair(keys_only.clone())).unwrap();
        assert_eq!(text, r#"[["x","y"],null]"#);
        // Read from text (borrowed where nothing is escaped) and from escapes alike.
        let Pair(read) = serde_json::from_str(&text).unwrap();
        assert_eq!(read, keys_only);
        let Pair(read) = serde_json::from_str(r#"[null, ["\u00e9", "q\"q"]]"#).unwrap();
        assert_eq!(read.label(0), Some("é"));
        assert_eq!(read.label(1), Some("q\"q"));
        assert!(!read.has_keys());
        assert!(serde_json::from_str::<Pair>(r"[[1], null]").is_err());
    }

    #[test]
    fn a_key_path_is_the_names_keys_or_else_the_indices() {
        let path: ItemPath = smallvec::smallvec![3, 1];
        assert_eq!(key_path(&path, &[]), ["3", "1"]);
        let names = [
            ItemName::single("paris", None),
            ItemName::single("mon", None),
        ];
        assert_eq!(key_path(&path, &names), ["paris", "mon"]);
    }
}
