module com.example.kvq.absmax {
    requires dev.kvq.api;
    provides dev.kvq.spi.QuantizerProvider with com.example.kvq.absmax.AbsmaxProvider;
}
