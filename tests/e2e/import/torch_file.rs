//! Writes PyTorch `torch.save` zip files: enough of pickle protocol 2 and of the zip format
//! (stored entries) to make Lightning-like checkpoints with chosen contents, for the error
//! cases the fixtures cannot show.

use std::collections::BTreeMap;
use std::path::Path;

pub enum Value {
    Tensor(Vec<usize>, Vec<f32>),
    Dict(Vec<(String, Value)>),
    List(Vec<Value>),
    Int(i64),
}

#[derive(Default)]
struct Pickle {
    out: Vec<u8>,
    storages: Vec<Vec<u8>>,
}

impl Pickle {
    fn string(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend((s.len() as u32).to_le_bytes());
        self.out.extend(s.as_bytes());
    }
    fn int(&mut self, v: i64) {
        self.out.push(b'J');
        self.out.extend((v as i32).to_le_bytes());
    }
    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend(format!("{module}\n{name}\n").as_bytes());
    }
    fn value(&mut self, value: &Value) {
        match value {
            Value::Int(v) => self.int(*v),
            Value::Dict(items) => {
                self.out.extend(b"}(");
                for (key, value) in items {
                    self.string(key);
                    self.value(value);
                }
                self.out.push(b'u');
            }
            Value::List(items) => {
                self.out.extend(b"](");
                for item in items {
                    self.value(item);
                }
                self.out.push(b'e');
            }
            Value::Tensor(shape, values) => {
                let key = self.storages.len();
                self.storages
                    .push(values.iter().flat_map(|v| v.to_le_bytes()).collect());
                self.global("torch._utils", "_rebuild_tensor_v2");
                self.out.push(b'(');
                // Persistent id: ('storage', FloatStorage, key, location, numel).
                self.out.push(b'(');
                self.string("storage");
                self.global("torch", "FloatStorage");
                self.string(&key.to_string());
                self.string("cpu");
                self.int(values.len() as i64);
                self.out.extend(b"tQ");
                self.int(0);
                self.out.push(b'(');
                for &d in shape {
                    self.int(d as i64);
                }
                self.out.push(b't');
                self.out.push(b'(');
                let mut stride = 1;
                let mut strides = Vec::new();
                for &d in shape.iter().rev() {
                    strides.push(stride);
                    stride *= d;
                }
                for s in strides.into_iter().rev() {
                    self.int(s as i64);
                }
                self.out.push(b't');
                self.out.push(0x89); // requires_grad = False
                self.global("collections", "OrderedDict");
                self.out.extend(b")R");
                self.out.extend(b"tR");
            }
        }
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A zip archive of stored (uncompressed) entries.
fn zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let fields = |out: &mut Vec<u8>| {
            out.extend(20u16.to_le_bytes()); // version needed
            out.extend(0u16.to_le_bytes()); // flags
            out.extend(0u16.to_le_bytes()); // stored
            out.extend(0u16.to_le_bytes()); // time
            out.extend(0x21u16.to_le_bytes()); // date: 1980-01-01
            out.extend(crc.to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(0u16.to_le_bytes()); // extra
        };
        out.extend(0x0403_4b50u32.to_le_bytes());
        fields(&mut out);
        out.extend(name.as_bytes());
        out.extend(data);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes()); // version made by
        fields(&mut central);
        central.extend(0u16.to_le_bytes()); // comment
        central.extend(0u16.to_le_bytes()); // disk
        central.extend(0u16.to_le_bytes()); // internal attributes
        central.extend(0u32.to_le_bytes()); // external attributes
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(central_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// Saves `root` as `torch.save` would (pickle protocol 2 in a zip).
pub fn save(path: &Path, root: &Value) {
    let mut pickle = Pickle::default();
    pickle.out.extend([0x80, 2]);
    pickle.value(root);
    pickle.out.push(b'.');
    let mut entries = vec![("archive/data.pkl".to_string(), pickle.out)];
    for (key, bytes) in pickle.storages.into_iter().enumerate() {
        entries.push((format!("archive/data/{key}"), bytes));
    }
    entries.push(("archive/version".into(), b"3\n".to_vec()));
    std::fs::write(path, zip(&entries)).unwrap();
}

/// A Lightning-like checkpoint of official-named tensors: `state_dict` with
/// `backbone.<name>`, and `ema.shadow_params` holding `ema` (names in order) if given.
pub fn lightning(
    path: &Path,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    ema: Option<&[String]>,
) {
    let tensor = |name: &str| {
        let (shape, values) = &tensors[name];
        Value::Tensor(shape.clone(), values.clone())
    };
    let state = tensors
        .keys()
        .map(|name| (format!("backbone.{name}"), tensor(name)))
        .collect();
    let mut root = vec![
        ("epoch".to_string(), Value::Int(3)),
        ("global_step".to_string(), Value::Int(1234)),
        ("state_dict".to_string(), Value::Dict(state)),
    ];
    if let Some(order) = ema {
        let shadow = Value::List(order.iter().map(|name| tensor(name)).collect());
        root.push((
            "ema".to_string(),
            Value::Dict(vec![("shadow_params".to_string(), shadow)]),
        ));
    }
    save(path, &Value::Dict(root));
}
