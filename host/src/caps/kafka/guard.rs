//! A walk over the request bodies the host decodes, before kafka-protocol decodes them.
//!
//! kafka-protocol 0.18 sizes every array from the count on the wire (`Vec::with_capacity`)
//! before reading an element, so a body of a few bytes claiming two billion topics would make
//! the host allocate hundreds of gigabytes and abort. Every element takes at least one byte,
//! so a count larger than the bytes left is impossible; this walk follows each checked
//! request's layout (as kafka-protocol decodes it, version by version) and refuses such a
//! count, and any tagged field (none of these requests has one the host could judge).

use kafka_protocol::messages::ApiKey;

type R = Result<(), String>;

struct Reader<'a> {
    buf: &'a [u8],
    /// A flexible version: compact strings and arrays, tagged fields after each struct.
    flex: bool,
}

impl Reader<'_> {
    fn skip(&mut self, n: usize) -> R {
        if self.buf.len() < n {
            return Err("the body ends early".into());
        }
        self.buf = &self.buf[n..];
        Ok(())
    }

    fn int(&mut self, n: usize) -> Result<i64, String> {
        let bytes = self.buf.get(..n).ok_or("the body ends early")?;
        let v = bytes.iter().fold(0i64, |acc, b| (acc << 8) | i64::from(*b));
        self.skip(n)?;
        // Sign-extend from n bytes.
        let shift = 64 - 8 * n as u32;
        Ok((v << shift) >> shift)
    }

    fn uvarint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..5 {
            let b = *self.buf.first().ok_or("the body ends early")?;
            self.skip(1)?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint longer than 5 bytes".into())
    }

    /// A string or nullable string: its length, then its bytes.
    fn string(&mut self) -> R {
        let len = if self.flex {
            self.uvarint()? as i64 - 1
        } else {
            self.int(2)?
        };
        if len < -1 {
            return Err(format!("a string of length {len}"));
        }
        self.skip(len.max(0) as usize)
    }

    /// An array or nullable array, each element walked by `each`.
    fn array(&mut self, mut each: impl FnMut(&mut Self) -> R) -> R {
        let n = if self.flex {
            self.uvarint()? as i64 - 1
        } else {
            self.int(4)?
        };
        if n < -1 {
            return Err(format!("an array of length {n}"));
        }
        if n > self.buf.len() as i64 {
            return Err(format!(
                "an array claims {n} elements with {} bytes left",
                self.buf.len()
            ));
        }
        for _ in 0..n.max(0) {
            each(self)?;
        }
        Ok(())
    }

    /// The end of a struct: no tagged fields.
    fn end(&mut self) -> R {
        if !self.flex {
            return Ok(());
        }
        match self.uvarint()? {
            0 => Ok(()),
            n => Err(format!(
                "{n} tagged fields the host cannot judge (none is defined for this request)"
            )),
        }
    }

    fn int32s(&mut self) -> R {
        self.array(|r| r.skip(4))
    }

    fn strings(&mut self) -> R {
        self.array(|r| r.string())
    }
}

/// Walks `body` as the request `key` at `version` (one of the checked requests), refusing
/// impossible counts, tagged fields and bytes left over.
pub fn walk(key: ApiKey, version: i16, body: &[u8]) -> R {
    let flex_from = match key {
        ApiKey::CreateTopics => 5,
        ApiKey::DeleteTopics => 4,
        ApiKey::CreatePartitions | ApiKey::CreateAcls | ApiKey::DeleteAcls => 2,
        ApiKey::IncrementalAlterConfigs => 1,
        ApiKey::AlterPartitionReassignments => 0,
        ApiKey::OffsetCommit => 8,
        ApiKey::DeleteGroups => 2,
        ApiKey::Metadata => 9,
        other => return Err(format!("{other:?} is not a checked request")),
    };
    let mut r = Reader {
        buf: body,
        flex: version >= flex_from,
    };
    let v = version;
    match key {
        ApiKey::CreateTopics => create_topics(&mut r),
        ApiKey::DeleteTopics => delete_topics(&mut r, v),
        ApiKey::CreatePartitions => create_partitions(&mut r),
        ApiKey::IncrementalAlterConfigs => incremental_alter_configs(&mut r),
        ApiKey::AlterPartitionReassignments => alter_partition_reassignments(&mut r, v),
        ApiKey::OffsetCommit => offset_commit(&mut r, v),
        ApiKey::DeleteGroups => r.strings(),
        ApiKey::CreateAcls => r.array(|r| acl(r)),
        ApiKey::DeleteAcls => r.array(|r| acl(r)),
        _ => metadata(&mut r, v),
    }?;
    r.end()?;
    if r.buf.is_empty() {
        Ok(())
    } else {
        Err(format!("{} bytes after the request", r.buf.len()))
    }
}

fn create_topics(r: &mut Reader) -> R {
    r.array(|r| {
        r.string()?; // name
        r.skip(4 + 2)?; // num_partitions, replication_factor
        r.array(|r| {
            r.skip(4)?; // partition_index
            r.int32s()?; // broker_ids
            r.end()
        })?;
        r.array(|r| {
            r.string()?; // config name
            r.string()?; // value
            r.end()
        })?;
        r.end()
    })?;
    r.skip(4 + 1) // timeout_ms, validate_only
}

fn delete_topics(r: &mut Reader, v: i16) -> R {
    if v >= 6 {
        r.array(|r| {
            r.string()?; // name
            r.skip(16)?; // topic_id
            r.end()
        })?;
    } else {
        r.strings()?; // topic_names
    }
    r.skip(4) // timeout_ms
}

fn create_partitions(r: &mut Reader) -> R {
    r.array(|r| {
        r.string()?; // name
        r.skip(4)?; // count
        r.array(|r| {
            r.int32s()?; // broker_ids
            r.end()
        })?;
        r.end()
    })?;
    r.skip(4 + 1) // timeout_ms, validate_only
}

fn incremental_alter_configs(r: &mut Reader) -> R {
    r.array(|r| {
        r.skip(1)?; // resource_type
        r.string()?; // resource_name
        r.array(|r| {
            r.string()?; // name
            r.skip(1)?; // config_operation
            r.string()?; // value
            r.end()
        })?;
        r.end()
    })?;
    r.skip(1) // validate_only
}

fn alter_partition_reassignments(r: &mut Reader, v: i16) -> R {
    r.skip(4)?; // timeout_ms
    if v >= 1 {
        r.skip(1)?; // allow_replication_factor_change
    }
    r.array(|r| {
        r.string()?; // name
        r.array(|r| {
            r.skip(4)?; // partition_index
            r.int32s()?; // replicas
            r.end()
        })?;
        r.end()
    })
}

fn offset_commit(r: &mut Reader, v: i16) -> R {
    r.string()?; // group_id
    r.skip(4)?; // generation_id_or_member_epoch
    r.string()?; // member_id
    if v >= 7 {
        r.string()?; // group_instance_id
    }
    if v <= 4 {
        r.skip(8)?; // retention_time_ms
    }
    r.array(|r| {
        r.string()?; // name
        r.array(|r| {
            r.skip(4 + 8)?; // partition_index, committed_offset
            if v >= 6 {
                r.skip(4)?; // committed_leader_epoch
            }
            r.string()?; // committed_metadata
            r.end()
        })?;
        r.end()
    })
}

/// CreateAcls' creation and DeleteAcls' filter have one layout.
fn acl(r: &mut Reader) -> R {
    r.skip(1)?; // resource type
    r.string()?; // resource name
    r.skip(1)?; // pattern type
    r.string()?; // principal
    r.string()?; // host
    r.skip(2)?; // operation, permission_type
    r.end()
}

fn metadata(r: &mut Reader, v: i16) -> R {
    r.array(|r| {
        if v >= 10 {
            r.skip(16)?; // topic_id
        }
        r.string()?; // name
        r.end()
    })?;
    if v >= 4 {
        r.skip(1)?; // allow_auto_topic_creation
    }
    if (8..=10).contains(&v) {
        r.skip(1)?; // include_cluster_authorized_operations
    }
    if v >= 8 {
        r.skip(1)?; // include_topic_authorized_operations
    }
    Ok(())
}
