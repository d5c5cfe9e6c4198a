//! Alibaba OSS's own "do not overwrite" header on create-only PUTs.
//!
//! Exactly-once commit records are created with `If-None-Match: *`
//! ([`object_store::PutMode::Create`]). OSS documents its own header for the
//! same purpose, `x-oss-forbid-overwrite: true`. When an S3 sink's endpoint
//! is OSS (or `s3.forbid_overwrite_header = true`), its HTTP client is
//! wrapped so that every request marked [`CreateOnly`] (the commit log marks
//! its create-only PUTs) also carries that header. Other requests are left
//! alone: data objects may be written again with the same name (a re-read
//! after a restart), which the header would refuse.
//!
//! The header is added after the request is signed, as an unsigned header.
//! Whether the store honours either header is not assumed: the exactly-once
//! sink's start-up probe (`CommitLog::probe_conditional_create`) checks it.

use async_trait::async_trait;
use http::HeaderValue;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::{ClientOptions, PutOptions};

/// The header OSS reads.
pub(crate) const FORBID_OVERWRITE: &str = "x-oss-forbid-overwrite";

/// Marks a request (in its extensions) as create-only.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CreateOnly;

/// `opts` with the [`CreateOnly`] mark.
pub fn mark(mut opts: PutOptions) -> PutOptions {
    opts.extensions.insert(CreateOnly);
    opts
}

/// An HTTP connector whose clients add [`FORBID_OVERWRITE`] to create-only
/// requests.
#[derive(Debug, Default)]
pub(crate) struct ForbidOverwriteConnector;

impl HttpConnector for ForbidOverwriteConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(ForbidOverwrite(inner)))
    }
}

/// See [`ForbidOverwriteConnector`].
#[derive(Debug)]
pub(crate) struct ForbidOverwrite(pub HttpClient);

#[async_trait]
impl HttpService for ForbidOverwrite {
    async fn call(&self, mut request: HttpRequest) -> Result<HttpResponse, HttpError> {
        if request.extensions().get::<CreateOnly>().is_some() {
            request
                .headers_mut()
                .insert(FORBID_OVERWRITE, HeaderValue::from_static("true"));
        }
        self.0.execute(request).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use object_store::client::HttpRequestBody;

    use super::*;

    /// Records the headers of every request it is handed; answers 200.
    #[derive(Debug, Default)]
    struct Recorder(Arc<Mutex<Vec<Option<String>>>>);

    #[async_trait]
    impl HttpService for Recorder {
        async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
            let seen = request
                .headers()
                .get(FORBID_OVERWRITE)
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            self.0.lock().unwrap().push(seen);
            Ok(HttpResponse::new(Vec::new().into()))
        }
    }

    #[tokio::test]
    async fn only_create_only_requests_carry_the_header() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let client = ForbidOverwrite(HttpClient::new(Recorder(seen.clone())));
        let mut marked = HttpRequest::new(HttpRequestBody::empty());
        marked.extensions_mut().insert(CreateOnly);
        client.call(marked).await.unwrap();
        client
            .call(HttpRequest::new(HttpRequestBody::empty()))
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), [Some("true".to_owned()), None]);
        assert!(
            mark(PutOptions::default())
                .extensions
                .get::<CreateOnly>()
                .is_some()
        );
    }
}
