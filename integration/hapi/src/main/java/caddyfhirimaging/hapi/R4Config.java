package caddyfhirimaging.hapi;

import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;

/** HAPI's FHIR R4 configuration (the default, HAPI_FHIR_VERSION=r4); see {@link HapiServerConfig#fhirVersion()}. */
@Configuration
@Import(JpaR4Config.class)
public class R4Config {}
