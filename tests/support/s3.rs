//! A local S3-compatible server for tests: moto's server (PyPI `moto[server]`), on a free
//! loopback port, in memory. `scripts/test.sh` installs it and names it in `BURNRATE_MOTO`.

use std::process::{Child, Command, Stdio};

use super::{free_port, wait_for_port};

pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        let binary = std::env::var("BURNRATE_MOTO").unwrap_or_else(|_| "moto_server".into());
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary}: {e}; run the tests through scripts/test.sh")
            });
        wait_for_port(port, "moto_server");
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn create_bucket(&self, bucket: &str) {
        ureq::put(&format!("{}/{bucket}", self.endpoint))
            .send_empty()
            .expect("bucket created");
    }

    /// Stops the server where it stands (SIGSTOP): connections are accepted by the kernel and
    /// then hang, as with a store that stops answering.
    pub fn pause(&self) {
        super::signal(&self.child, "STOP");
    }

    /// Lets a paused server go on (SIGCONT); the requests it held are answered.
    pub fn resume(&self) {
        super::signal(&self.child, "CONT");
    }

    /// The environment a client needs to reach this server, as a pod gets from its Secret.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Object keys under `prefix` (moto answers unsigned ListObjectsV2).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let text = ureq::get(&format!(
            "{}/{bucket}?list-type=2&prefix={prefix}&max-keys=10000",
            self.endpoint
        ))
        .call()
        .expect("listing")
        .body_mut()
        .read_to_string()
        .unwrap();
        text.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// Puts `bytes` at `key` (moto takes an unsigned PUT).
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        ureq::put(&format!("{}/{bucket}/{key}", self.endpoint))
            .send(bytes)
            .expect("object put");
    }

    /// An object's text, read with a signed request (boto3, which moto brings).
    pub fn get(&self, bucket: &str, key: &str) -> String {
        let script = "import sys, boto3\n\
            s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                              aws_access_key_id='testing', aws_secret_access_key='testing')\n\
            sys.stdout.write(s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])['Body'].read().decode())";
        let out = Command::new("python3")
            .args(["-c", script, &self.endpoint, bucket, key])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "reading s3://{bucket}/{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
